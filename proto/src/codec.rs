//! The codec of every generated client and server: prost, as tonic's
//! default, but with 1 KiB initial encode and decode buffers instead of
//! 8 KiB. A server stream holds its encode buffer for as long as it is open,
//! and a member's subscription mostly idles: 1,000 idle subscribers held
//! 8 MiB of buffers they never filled (`orex-bench idle-subscribers`, heap
//! profile in BENCHMARKS.md). Buffers still grow to any message's size, and
//! the yield threshold (when a stream flushes) stays tonic's 32 KiB.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size of every encode and decode buffer.
pub const INITIAL_BUFFER: usize = 1024;
/// Bytes a stream encodes before it yields to send them (tonic's default).
pub const YIELD_THRESHOLD: usize = 32 * 1024;

/// `application/grpc+proto` via prost, with [`INITIAL_BUFFER`]-sized buffers.
#[derive(Debug, Clone, Copy)]
pub struct OrexCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for OrexCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD)
}

impl<T, U> Codec for OrexCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
