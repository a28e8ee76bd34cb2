//! COMPRESS=DEFLATE (RFC 4978): after the tagged OK, both directions of the connection are raw
//! DEFLATE (RFC 1951). Every flush of the writer ends in a sync flush, so each response reaches
//! the client whole; the reader inflates as bytes arrive, so the framing limits count inflated
//! bytes and a small compressed input cannot grow past them unseen.

use async_compression::tokio::bufread::DeflateDecoder;
use async_compression::tokio::write::DeflateEncoder;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, Join, ReadHalf, WriteHalf};

/// A stream with DEFLATE on both directions.
pub(crate) type Deflated<S> =
    Join<DeflateDecoder<BufReader<ReadHalf<S>>>, DeflateEncoder<WriteHalf<S>>>;

/// Wraps `stream` so that what is written is deflated and what is read is inflated.
pub(crate) fn deflate<S: AsyncRead + AsyncWrite>(stream: S) -> Deflated<S> {
    let (r, w) = tokio::io::split(stream);
    tokio::io::join(
        DeflateDecoder::new(BufReader::new(r)),
        DeflateEncoder::new(w),
    )
}
