//! Page tokens (`orex_kit::page_token::PageTokens`): opening arbitrary
//! token text under an arbitrary context never panics and never yields a
//! cursor it did not seal; a sealed cursor opens to itself under its own
//! context only.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use orex_kit::page_token::PageTokens;
use orex_kit::store::{Store, StoreConfig};

struct Fixture {
    tokens: PageTokens,
    _dir: tempfile::TempDir,
    // The store's background flusher needs a runtime.
    _runtime: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = runtime.block_on(async {
        let store = Store::open(dir.path(), &StoreConfig { cache_mib: 8 }).expect("store");
        PageTokens::open_or_create(&store).expect("page tokens")
    });
    Fixture {
        tokens,
        _dir: dir,
        _runtime: runtime,
    }
});

fuzz_target!(|data: &[u8]| {
    let tokens = &FIXTURE.tokens;
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (context, rest) = rest.split_at((n as usize).min(rest.len()));
    // Whatever a caller sends as a token.
    let _ = tokens.open(context, &String::from_utf8_lossy(rest));
    // What the service seals comes back, and only under its own context.
    let sealed = tokens.seal(context, rest);
    assert_eq!(tokens.open(context, &sealed).as_deref(), Some(rest));
    let mut other = context.to_vec();
    other.push(0);
    assert_eq!(tokens.open(&other, &sealed), None);
});
