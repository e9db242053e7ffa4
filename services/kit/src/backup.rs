//! Backups of a store: the file format, the consistent snapshot a running
//! server takes (`admin`, `orex admin backup`) and the offline restore
//! (`orex admin restore`).
//!
//! A backup file is a sequence of length-delimited protobuf [`Record`]s: one
//! header (format, server, time, folder), one entry per key of every tree,
//! and a trailer with the number of entries and the SHA-256 of their
//! encodings. A file that was cut short, altered or reordered fails the
//! check before anything is written.
//!
//! Consistency: every write of an orex store goes through its group commit
//! (`group_commit`), which applies each batch under the store's write gate;
//! a snapshot holds the gate exclusively while it reads every tree but the
//! event logs, and notes where each event log ends, so it sees whole
//! batches only. Event logs are append-only, so they are copied after the
//! gate is released, up to the noted ends: writes wait for the small
//! trees, not for the logs (the bulk: the access log, report events). The
//! gateway's checkpoints (`audit_checkpoints`, written outside the group
//! commit) are read under the gate, before the records they cover, so every
//! checkpoint in a backup has its records.
//!
//! The digest detects damage (a flipped bit, a cut), not tampering: anyone
//! can recompute it. The access log inside a gateway's backup is what is
//! tamper-evident, and `orex admin restore --audit-key` checks it.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::KitError;
use crate::store::Store;

/// The version of the file format written here.
pub const FORMAT: u32 = 1;

/// What opens every backup file.
pub const MAGIC: &str = "orex-backup";

/// Largest record accepted when reading (sled values are far smaller).
const MAX_RECORD: u64 = 64 * 1024 * 1024;

/// One record of a backup file.
#[derive(Clone, PartialEq, Message)]
pub struct Record {
    /// What the record is.
    #[prost(oneof = "Part", tags = "1, 2, 3")]
    pub part: Option<Part>,
}

/// The kinds of record.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Part {
    /// First: what the file is.
    #[prost(message, tag = "1")]
    Header(Header),
    /// One key of one tree.
    #[prost(message, tag = "2")]
    Entry(Entry),
    /// Last: how many entries, and their digest.
    #[prost(message, tag = "3")]
    Trailer(Trailer),
}

/// The first record.
#[derive(Clone, PartialEq, Message)]
pub struct Header {
    /// Always [`MAGIC`].
    #[prost(string, tag = "1")]
    pub magic: String,
    /// The file format, [`FORMAT`].
    #[prost(uint32, tag = "2")]
    pub format: u32,
    /// The binary that took it (`orex-sharing 0.1.0`).
    #[prost(string, tag = "3")]
    pub server: String,
    /// When, in seconds since the Unix epoch.
    #[prost(int64, tag = "4")]
    pub taken_at: i64,
    /// The store's folder on the server.
    #[prost(string, tag = "5")]
    pub store: String,
}

/// One key of one tree.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    /// The tree's name.
    #[prost(bytes = "vec", tag = "1")]
    pub tree: Vec<u8>,
    /// The key.
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    /// The value.
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
}

/// The last record.
#[derive(Clone, PartialEq, Message)]
pub struct Trailer {
    /// Entries in the file.
    #[prost(uint64, tag = "1")]
    pub entries: u64,
    /// Lowercase hex SHA-256 over the encoded entries, in file order.
    #[prost(string, tag = "2")]
    pub sha256: String,
}

/// What a backup holds, as checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Its header.
    pub header: Header,
    /// Its entries.
    pub entries: u64,
    /// Its digest.
    pub sha256: String,
    /// Entries per tree, in file order.
    pub trees: Vec<(String, u64)>,
}

/// Writes a snapshot of `store` to `out`. `gate` is the store's write gate,
/// held exclusively (see [`Store::gate`]); it is released as soon as the
/// trees that are not event logs are read. Blocking: call it off the async
/// workers (`spawn_blocking`).
pub fn write_snapshot(
    store: &Store,
    server: &str,
    out: &mut impl Write,
    gate: tokio::sync::OwnedRwLockWriteGuard<()>,
) -> Result<Summary, KitError> {
    let db = store.db();
    let header = Header {
        magic: MAGIC.into(),
        format: FORMAT,
        server: server.into(),
        taken_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        store: store.path().display().to_string(),
    };
    let mut out = BufWriter::new(out);
    write_record(&mut out, Part::Header(header.clone()))?;
    let mut names = db.tree_names();
    names.sort();
    let mut digest = Sha256::new();
    let mut entries = 0u64;
    let mut trees = Vec::new();
    let mut copy = |name: &[u8], iter: sled::Iter| -> Result<(), KitError> {
        let mut in_tree = 0;
        for kv in iter {
            let (key, value) = kv?;
            let entry = Entry {
                tree: name.to_vec(),
                key: key.to_vec(),
                value: value.to_vec(),
            };
            digest.update(entry.encode_to_vec());
            write_record(&mut out, Part::Entry(entry))?;
            in_tree += 1;
        }
        entries += in_tree;
        trees.push((String::from_utf8_lossy(name).into_owned(), in_tree));
        Ok(())
    };
    // Under the gate: every tree but the event logs, and where each log ends.
    let mut logs = Vec::new();
    for name in names {
        let tree = db.open_tree(&name)?;
        if store.is_event_log(&name) {
            let end = tree.last()?.map(|(k, _)| k);
            logs.push((name, tree, end));
        } else {
            copy(&name, tree.iter())?;
        }
    }
    drop(gate);
    // The logs, up to the noted ends: what follows was written after.
    for (name, tree, end) in logs {
        match end {
            Some(end) => copy(&name, tree.range(..=end))?,
            None => copy(&name, tree.range::<&[u8], _>(..&[][..]))?,
        }
    }
    let sha256 = hex::encode(digest.finalize());
    write_record(
        &mut out,
        Part::Trailer(Trailer {
            entries,
            sha256: sha256.clone(),
        }),
    )?;
    out.flush().map_err(io)?;
    Ok(Summary {
        header,
        entries,
        sha256,
        trees,
    })
}

fn write_record(out: &mut impl Write, part: Part) -> Result<(), KitError> {
    let record = Record { part: Some(part) };
    out.write_all(&record.encode_length_delimited_to_vec())
        .map_err(io)
}

fn io(e: std::io::Error) -> KitError {
    KitError::Backup(e.to_string())
}

fn bad(message: impl Into<String>) -> KitError {
    KitError::Backup(message.into())
}

/// Reads a backup file, handing each entry to `each`, and checks it whole:
/// header first, trailer last, the count and the digest. `each` sees
/// entries before the check ends: restore reads a file twice (checks, then
/// writes) so a bad file writes nothing.
pub fn read(
    input: impl Read,
    mut each: impl FnMut(&Entry) -> Result<(), KitError>,
) -> Result<Summary, KitError> {
    let mut input = BufReader::new(input);
    let header = match next_record(&mut input)? {
        Some(Part::Header(h)) => h,
        _ => return Err(bad("not an orex backup: no header")),
    };
    if header.magic != MAGIC {
        return Err(bad("not an orex backup: wrong magic"));
    }
    if header.format != FORMAT {
        return Err(bad(format!(
            "format {} is not one this version reads ({FORMAT})",
            header.format
        )));
    }
    let mut digest = Sha256::new();
    let mut entries = 0u64;
    let mut trees: Vec<(String, u64)> = Vec::new();
    loop {
        match next_record(&mut input)? {
            Some(Part::Entry(e)) => {
                digest.update(e.encode_to_vec());
                entries += 1;
                let name = String::from_utf8_lossy(&e.tree);
                match trees.last_mut() {
                    Some((last, n)) if *last == name => *n += 1,
                    _ => trees.push((name.into_owned(), 1)),
                }
                each(&e)?;
            }
            Some(Part::Trailer(t)) => {
                let sha256 = hex::encode(digest.finalize());
                if t.entries != entries || t.sha256 != sha256 {
                    return Err(bad(format!(
                        "damaged: the trailer says {} entries with SHA-256 {}, the file holds {entries} with {sha256}",
                        t.entries, t.sha256
                    )));
                }
                let mut rest = [0u8; 1];
                if input.read(&mut rest).map_err(io)? != 0 {
                    return Err(bad("damaged: bytes after the trailer"));
                }
                return Ok(Summary {
                    header,
                    entries,
                    sha256,
                    trees,
                });
            }
            Some(Part::Header(_)) => return Err(bad("damaged: a second header")),
            None => return Err(bad("cut short: no trailer")),
        }
    }
}

fn next_record(input: &mut impl Read) -> Result<Option<Part>, KitError> {
    // A varint length, then the record.
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        if input.read(&mut byte).map_err(io)? == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(bad("cut short inside a record length"));
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            break;
        }
        if i == 9 {
            return Err(bad("damaged: bad record length"));
        }
    }
    if len > MAX_RECORD {
        return Err(bad(format!("damaged: a record of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    input
        .read_exact(&mut buf)
        .map_err(|_| bad("cut short inside a record"))?;
    let record = Record::decode(buf.as_slice()).map_err(|e| bad(format!("damaged: {e}")))?;
    record
        .part
        .map(Some)
        .ok_or_else(|| bad("damaged: an empty record"))
}

/// Restores the backup at `file` into `data_dir`, which must not exist or
/// be empty (a restore never merges into a store). Checks the whole file
/// first; nothing is written unless it is intact.
pub fn restore(file: &Path, data_dir: &Path) -> Result<Summary, KitError> {
    restore_checked(file, data_dir, |_| Ok(()))
}

/// [`restore`], running `check` on the restored database before it is put
/// in place. The store is built in a hidden folder beside `data_dir` and
/// renamed into place only once whole and checked; on any failure the
/// hidden folder is removed and `data_dir` is left as it was.
pub fn restore_checked(
    file: &Path,
    data_dir: &Path,
    check: impl FnOnce(&sled::Db) -> Result<(), KitError>,
) -> Result<Summary, KitError> {
    let open = || std::fs::File::open(file).map_err(|e| bad(format!("{}: {e}", file.display())));
    let checked = read(open()?, |_| Ok(()))?;
    if data_dir.exists() {
        let mut entries =
            std::fs::read_dir(data_dir).map_err(|e| bad(format!("{}: {e}", data_dir.display())))?;
        if entries.next().is_some() {
            return Err(bad(format!(
                "{} is not empty: restore into a new folder, then point the service at it",
                data_dir.display()
            )));
        }
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| bad(format!("{}: not a folder name", data_dir.display())))?;
    let building = data_dir.with_file_name(format!(
        ".{}.restoring-{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4()
    ));
    let placed = build(open, &building, check).and_then(|()| {
        std::fs::rename(&building, data_dir).map_err(|e| {
            bad(format!(
                "moving the restored store into {}: {e}",
                data_dir.display()
            ))
        })
    });
    if placed.is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    placed.map(|()| checked)
}

/// Writes the backup's entries into a new store at `folder`, flushes it and
/// runs `check` on it.
fn build(
    open: impl Fn() -> Result<std::fs::File, KitError>,
    folder: &Path,
    check: impl FnOnce(&sled::Db) -> Result<(), KitError>,
) -> Result<(), KitError> {
    let db = sled::Config::new().path(folder).open()?;
    let mut tree: Option<(Vec<u8>, sled::Tree)> = None;
    read(open()?, |e| {
        let t = match &tree {
            Some((name, t)) if *name == e.tree => t,
            _ => {
                let t = db.open_tree(&e.tree)?;
                &tree.insert((e.tree.clone(), t)).1
            }
        };
        t.insert(e.key.as_slice(), e.value.as_slice())?;
        Ok(())
    })?;
    db.flush()?;
    check(&db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    async fn store_with_data(dir: &Path) -> Store {
        let store = Store::open(dir, &StoreConfig::default()).unwrap();
        for (tree, n) in [("b_events", 300u32), ("a_reports", 20)] {
            let t = store.tree(tree).unwrap();
            for i in 0..n {
                t.insert(i.to_be_bytes(), format!("{tree}-{i}").as_bytes())
                    .unwrap();
            }
        }
        store
    }

    fn snapshot_bytes(store: &Store) -> (Vec<u8>, Summary) {
        let mut out = Vec::new();
        let gate = store.gate().clone().try_write_owned().unwrap();
        let summary = write_snapshot(store, "test", &mut out, gate).unwrap();
        (out, summary)
    }

    #[tokio::test]
    async fn a_snapshot_restores_to_the_same_trees_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_data(&dir.path().join("src")).await;
        let (bytes, summary) = snapshot_bytes(&store);
        let names: Vec<&str> = summary.trees.iter().map(|(n, _)| n.as_str()).collect();
        let a = names.iter().position(|n| *n == "a_reports").unwrap();
        let b = names.iter().position(|n| *n == "b_events").unwrap();
        assert!(a < b, "{names:?}");
        let file = dir.path().join("backup");
        std::fs::write(&file, &bytes).unwrap();
        let restored = restore(&file, &dir.path().join("dst")).unwrap();
        assert_eq!(restored.entries, summary.entries);
        assert_eq!(restored.sha256, summary.sha256);
        let db = sled::open(dir.path().join("dst")).unwrap();
        for (tree, n) in [("b_events", 300u32), ("a_reports", 20)] {
            let t = db.open_tree(tree).unwrap();
            assert_eq!(t.len(), n as usize);
            assert_eq!(
                t.get(7u32.to_be_bytes()).unwrap().unwrap(),
                format!("{tree}-7").as_bytes()
            );
        }
    }

    #[tokio::test]
    async fn a_damaged_or_short_file_restores_nothing_and_a_store_is_never_merged_into() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_data(&dir.path().join("src")).await;
        let (bytes, _) = snapshot_bytes(&store);
        let write = |name: &str, b: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, b).unwrap();
            p
        };
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        for (name, b, expected) in [
            ("flipped", flipped.as_slice(), "damaged"),
            ("short", &bytes[..bytes.len() - 10], "cut short"),
            ("empty", &[][..], "no header"),
            ("garbage", b"hello world".as_slice(), "cut short"),
        ] {
            let target = dir.path().join(format!("dst-{name}"));
            let err = restore(&write(name, b), &target).unwrap_err().to_string();
            assert!(err.contains(expected), "{name}: {err}");
            assert!(!target.exists(), "{name}: a bad file must write nothing");
        }
        let good = write("good", &bytes);
        // A restore whose check fails leaves nothing behind, not even its
        // hidden folder.
        let checked = dir.path().join("checked");
        let err = restore_checked(&good, &checked, |_| Err(bad("refused by the check")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("refused by the check"), "{err}");
        assert!(!checked.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("restoring"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // An empty folder is a fine target.
        let empty = dir.path().join("empty-folder");
        std::fs::create_dir_all(&empty).unwrap();
        restore(&good, &empty).unwrap();
        let occupied = dir.path().join("occupied");
        std::fs::create_dir_all(&occupied).unwrap();
        std::fs::write(occupied.join("db"), b"x").unwrap();
        let err = restore(&good, &occupied).unwrap_err().to_string();
        assert!(err.contains("not empty"), "{err}");
    }
}
