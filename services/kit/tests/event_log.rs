//! The event log and the streams that follow it, exercised the way a service
//! uses them: real sled stores in throwaway folders, concurrent writers, live
//! followers and a shutdown in the middle.
//!
//! What these tests pin down is the contract clients rely on to resume: every
//! event gets its own sequence with no gaps, a follower delivers each event
//! exactly once and in order, and a stream ended by shutdown names the last
//! sequence the client actually received.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use orex_kit::group_commit::{Applied, GroupCommit};
use orex_kit::store::{EventLog, Store, StoreConfig, Write, decode_value, encode_value, seq_key};
use orex_kit::stream::{BoxStream, StreamConfig, follow};
use orex_kit::{KitError, Shutdown};
use orex_proto::common::v1::PrincipalRef;
use tokio::sync::oneshot;
use tonic::{Code, Status};

/// Only a hang guard: every wait in these tests is expected to end at once.
const HANG_GUARD: Duration = Duration::from_secs(5);

const EVENTS: &str = "events";

fn open(dir: &Path) -> (Store, Arc<EventLog>) {
    let store = Store::open(dir, &orex_kit::store::StoreConfig::default()).expect("store opens");
    let log = EventLog::open(&store, EVENTS).expect("event log opens");
    (store, log)
}

/// The payload a writer stores; `subject` says who wrote it.
fn event(subject: String) -> PrincipalRef {
    PrincipalRef {
        member: "US".into(),
        subject,
    }
}

/// Commits one write through a group writer of its own (writers of one log
/// share its sequence lock, so several of them still number without gaps).
async fn commit<R: Send + 'static>(
    store: &Store,
    log: &Arc<EventLog>,
    write: impl Fn(u64) -> Result<Write<R>, KitError> + Send + Sync + 'static,
) -> Result<R, KitError> {
    let apply = move |first: u64, ops: &[()]| {
        ops.iter()
            .map(|()| {
                Ok(match write(first)? {
                    Write::Appended(out) => Applied { out, appended: 1 },
                    Write::Unchanged(out) => Applied { out, appended: 0 },
                })
            })
            .collect()
    };
    GroupCommit::new(store.clone(), log.clone(), Arc::new(apply))
        .submit(())
        .await
}

/// Appends one event written by `writer` and returns the sequence it got.
async fn append(store: &Store, log: &Arc<EventLog>, writer: &str) -> u64 {
    let tree = log.tree().clone();
    let payload = encode_value(&event(writer.to_owned()));
    commit(store, log, move |seq| {
        tree.insert(seq_key(seq), payload.clone())?;
        Ok(Write::Appended(seq))
    })
    .await
    .expect("commit succeeds")
}

/// Appends events named `event-<seq>` until the log holds `upto` of them.
async fn append_upto(store: &Store, log: &Arc<EventLog>, upto: u64) {
    for expected in log.published() + 1..=upto {
        let seq = append(store, log, &format!("event-{expected}")).await;
        assert_eq!(seq, expected, "events are numbered in commit order");
    }
}

/// What a client of a followed stream sees: the sequence and the writer.
type Delivered = (u64, String);

/// Decodes every event; the writer named in it must match its sequence.
fn decode(seq: u64, bytes: &[u8]) -> Option<Result<Delivered, Status>> {
    Some(
        decode_value::<PrincipalRef>(bytes)
            .map(|p| (seq, p.subject))
            .map_err(|e| Status::internal(e.to_string())),
    )
}

async fn next<T>(stream: &mut BoxStream<T>) -> Option<Result<T, Status>> {
    tokio::time::timeout(HANG_GUARD, stream.next())
        .await
        .expect("the stream yields or ends promptly")
}

/// Reads `count` events, failing on an error or an early end.
async fn receive(stream: &mut BoxStream<Delivered>, count: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.len() < count {
        let (seq, writer) = next(stream)
            .await
            .expect("the stream is still open")
            .expect("events arrive without error");
        assert_eq!(
            writer,
            format!("event-{seq}"),
            "the payload is the one stored at {seq}"
        );
        seqs.push(seq);
    }
    seqs
}

/// Reads to the end of a stream that is being shut down: the events still
/// buffered for the client, then the status that ended it.
async fn receive_until_end(stream: &mut BoxStream<Delivered>) -> (Vec<u64>, Status) {
    let mut seqs = Vec::new();
    loop {
        match next(stream)
            .await
            .expect("a stream ends with a status, not silently")
        {
            Ok((seq, _)) => seqs.push(seq),
            Err(status) => {
                assert!(
                    next(stream).await.is_none(),
                    "nothing follows the final status"
                );
                return (seqs, status);
            }
        }
    }
}

async fn drain(shutdown: &Shutdown) {
    tokio::time::timeout(HANG_GUARD, shutdown.drained())
        .await
        .expect("every follower stops once shutdown fires");
}

fn assert_resumes_after(status: &Status, delivered: u64) {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let resume_point = status
        .message()
        .split_once("after_sequence=")
        .and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        });
    assert_eq!(
        resume_point,
        Some(delivered),
        "resume point in {:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_get_gap_free_sequences_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path());

    let writers: Vec<_> = (0..50)
        .map(|i| {
            let (store, log) = (store.clone(), log.clone());
            tokio::spawn(async move {
                let writer = format!("writer-{i}");
                let seq = append(&store, &log, &writer).await;
                (seq, writer)
            })
        })
        .collect();
    let mut assigned = Vec::new();
    for writer in writers {
        assigned.push(writer.await.expect("writer task does not panic"));
    }
    assigned.sort();

    let seqs: Vec<u64> = assigned.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "no gaps and no repeats");
    assert_eq!(log.published(), 50);

    let stored: Vec<(u64, String)> = log
        .read_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|(seq, bytes)| (seq, decode_value::<PrincipalRef>(&bytes).unwrap().subject))
        .collect();
    assert_eq!(
        stored, assigned,
        "each event is stored, in order, under the sequence its writer was told"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_never_goes_backwards() {
    const COMMITS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path());

    let mut watch = log.watch();
    let watcher = tokio::spawn(async move {
        let mut seen = vec![*watch.borrow_and_update()];
        while *seen.last().unwrap() < COMMITS {
            watch.changed().await.expect("the log is still open");
            seen.push(*watch.borrow_and_update());
        }
        seen
    });

    let writers: Vec<_> = (0..COMMITS)
        .map(|i| {
            let (store, log) = (store.clone(), log.clone());
            tokio::spawn(async move { append(&store, &log, &format!("writer-{i}")).await })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task does not panic");
    }

    let seen = tokio::time::timeout(HANG_GUARD, watcher)
        .await
        .expect("the watcher sees the last commit")
        .expect("watcher task does not panic");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "published went backwards: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&COMMITS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_replays_then_follows_live_events_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path());
    let shutdown = Shutdown::new();
    append_upto(&store, &log, 5).await;

    let mut stream = follow(
        log.clone(),
        2,
        StreamConfig::default(),
        shutdown.clone(),
        decode,
    );
    assert_eq!(
        receive(&mut stream, 3).await,
        vec![3, 4, 5],
        "replay starts after 2"
    );

    append_upto(&store, &log, 8).await;
    assert_eq!(
        receive(&mut stream, 3).await,
        vec![6, 7, 8],
        "live events follow the replay"
    );

    shutdown.trigger();
    let (late, status) = receive_until_end(&mut stream).await;
    assert_eq!(late, Vec::<u64>::new(), "no event is delivered twice");
    assert_resumes_after(&status, 8);
    drain(&shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_skips_what_map_filters_out() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path());
    let shutdown = Shutdown::new();
    append_upto(&store, &log, 7).await;

    let only_odd = |seq: u64, bytes: &[u8]| {
        if seq.is_multiple_of(2) {
            None
        } else {
            decode(seq, bytes)
        }
    };
    let mut stream = follow(
        log.clone(),
        0,
        StreamConfig::default(),
        shutdown.clone(),
        only_odd,
    );
    // The last event is odd, so any even one let through would arrive before it.
    assert_eq!(receive(&mut stream, 4).await, vec![1, 3, 5, 7]);

    shutdown.trigger();
    let (late, status) = receive_until_end(&mut stream).await;
    assert_eq!(late, Vec::<u64>::new());
    assert_resumes_after(&status, 7);
    drain(&shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_stream_with_unavailable_naming_the_last_delivered_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path());
    let shutdown = Shutdown::new();
    append_upto(&store, &log, 20).await;

    let mut stream = follow(
        log.clone(),
        0,
        StreamConfig::default(),
        shutdown.clone(),
        decode,
    );
    assert_eq!(receive(&mut stream, 2).await, vec![1, 2]);

    shutdown.trigger();
    // Whatever the follower had already handed over still arrives; the status
    // then names the last of it, so a reconnect neither loses nor repeats.
    let (late, status) = receive_until_end(&mut stream).await;
    let received: Vec<u64> = [1, 2].into_iter().chain(late).collect();
    let last = *received.last().unwrap();
    assert_eq!(
        received,
        (1..=last).collect::<Vec<_>>(),
        "delivered in order, without gaps"
    );
    assert_resumes_after(&status, last);
    drain(&shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_filtered_out_do_not_move_the_resume_point() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path());
    let shutdown = Shutdown::new();
    append_upto(&store, &log, 5).await;

    let (read_last, last_was_read) = oneshot::channel();
    let mut read_last = Some(read_last);
    let hide_4_and_5 = move |seq: u64, bytes: &[u8]| {
        if seq == 5
            && let Some(tx) = read_last.take()
        {
            let _ = tx.send(());
        }
        if seq >= 4 { None } else { decode(seq, bytes) }
    };
    let mut stream = follow(
        log.clone(),
        0,
        StreamConfig::default(),
        shutdown.clone(),
        hide_4_and_5,
    );
    assert_eq!(receive(&mut stream, 3).await, vec![1, 2, 3]);
    // Shut down only once the follower has read past the hidden events.
    tokio::time::timeout(HANG_GUARD, last_was_read)
        .await
        .expect("the follower reads the whole log")
        .unwrap();

    shutdown.trigger();
    let (late, status) = receive_until_end(&mut stream).await;
    assert_eq!(late, Vec::<u64>::new(), "hidden events are never delivered");
    assert_resumes_after(&status, 3);
    drain(&shutdown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_continues_numbering() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open(dir.path());
        let shutdown = Shutdown::new();
        append_upto(&store, &log, 3).await;
        let mut stream = follow(
            log.clone(),
            0,
            StreamConfig::default(),
            shutdown.clone(),
            decode,
        );
        assert_eq!(receive(&mut stream, 3).await, vec![1, 2, 3]);
        drain(&shutdown).await;
    }

    let (store, log) = open(dir.path());
    assert_eq!(log.published(), 3, "what was committed before is readable");
    assert_eq!(append(&store, &log, "event-4").await, 4);
    let seqs: Vec<u64> = log
        .read_after(0, 1000)
        .unwrap()
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_gets_its_buffered_events_then_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path());
    let shutdown = Shutdown::new();
    append_upto(&store, &log, 20).await;
    let config = StreamConfig {
        buffer_events: 4,
        slow_consumer_seconds: 1,
    };

    let mut stream = follow(log.clone(), 0, config, shutdown.clone(), decode);
    // The client reads nothing while the follower fills its buffer and waits
    // for room; time is paused, so this sleep only lets the (virtual) slow-
    // consumer deadline pass.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // However full the buffer was, the status follows the buffered events.
    let (seqs, status) = receive_until_end(&mut stream).await;
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("after_sequence=4"),
        "names the resume point: {:?}",
        status.message()
    );
    drain(&shutdown).await;
}

#[tokio::test]
async fn events_are_numbered_in_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open(dir.path());
        for i in 0..3u8 {
            let tree = log.tree().clone();
            commit(&store, &log, move |seq| {
                tree.insert(seq_key(seq), vec![i])?;
                Ok(Write::Appended(()))
            })
            .await
            .unwrap();
        }
        let unchanged = commit(&store, &log, |_| Ok(Write::Unchanged(7)))
            .await
            .unwrap();
        assert_eq!(unchanged, 7);
        assert_eq!(log.published(), 3);
        let all = log.read_after(1, 10).unwrap();
        assert_eq!(all.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2, 3]);
    }
    let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
    let log = EventLog::open(&store, "events").unwrap();
    assert_eq!(log.published(), 3);
    assert_eq!(log.read_after(0, 2).unwrap().len(), 2);
}

#[tokio::test]
async fn a_failed_write_does_not_use_a_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path());
    let failed: Result<(), KitError> =
        commit(&store, &log, |_| Err(KitError::Flush("refused".into()))).await;
    assert!(failed.is_err());
    let tree = log.tree().clone();
    commit(&store, &log, move |seq| {
        assert_eq!(seq, 1);
        tree.insert(seq_key(seq), vec![])?;
        Ok(Write::Appended(()))
    })
    .await
    .unwrap();
}
