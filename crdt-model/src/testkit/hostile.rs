//! Hostile bytes built by hand, for the tests that feed them to `wire` and to a running node:
//! LEB128 numbers, Automerge sync messages and change chunks framed as Automerge frames them,
//! Bloom filters with whatever parameters an attacker chooses, and deflate streams that inflate
//! a thousandfold.
//!
//! A message or chunk built here is only as well-formed as its arguments: that is the point.

use crate::wire;

pub const CHUNK_TYPE_CHANGE: u8 = wire::CHUNK_TYPE_CHANGE;
pub const CHUNK_TYPE_COMPRESSED: u8 = wire::CHUNK_TYPE_COMPRESSED;
/// The longest match deflate can copy, which its length code 285 stands for.
pub const DEFLATE_MATCH_MAX: usize = 258;

/// Append `n` as unsigned LEB128.
pub fn uleb(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Append `n` as signed LEB128.
pub fn sleb(out: &mut Vec<u8>, mut n: i64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        let done = (n == 0 && byte & 0x40 == 0) || (n == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The unsigned LEB128 number at the start of `bytes`, and how many bytes it took.
pub fn read_uleb(bytes: &[u8]) -> (u64, usize) {
    let mut n = 0;
    for (i, b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (n, i + 1);
        }
    }
    panic!("not a LEB128 number");
}

/// Append a list of hashes: its length, then each hash.
pub fn hash_list(out: &mut Vec<u8>, hashes: &[[u8; 32]]) {
    uleb(out, hashes.len() as u64);
    for h in hashes {
        out.extend_from_slice(h);
    }
}

/// A V1 sync message: `heads`, no needs, `haves` as (last_sync, Bloom filter bytes), change
/// chunks, and `flags` if any.
pub fn message(
    heads: &[[u8; 32]],
    haves: &[(&[[u8; 32]], Vec<u8>)],
    changes: &[Vec<u8>],
    flags: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = vec![wire::MESSAGE_TYPE_SYNC_V1];
    hash_list(&mut out, heads);
    hash_list(&mut out, &[]);
    uleb(&mut out, haves.len() as u64);
    for (last_sync, bloom) in haves {
        hash_list(&mut out, last_sync);
        uleb(&mut out, bloom.len() as u64);
        out.extend_from_slice(bloom);
    }
    uleb(&mut out, changes.len() as u64);
    for chunk in changes {
        uleb(&mut out, chunk.len() as u64);
        out.extend_from_slice(chunk);
    }
    if let Some(flags) = flags {
        uleb(&mut out, flags.len() as u64);
        out.extend_from_slice(flags);
    }
    out
}

/// A Bloom filter claiming `entries`, `bits_per_entry` and `probes`, followed by `bits_len`
/// bytes of set bits, whatever length those parameters call for.
pub fn bloom(entries: u32, bits_per_entry: u32, probes: u32, bits_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    uleb(&mut out, entries.into());
    uleb(&mut out, bits_per_entry.into());
    uleb(&mut out, probes.into());
    out.resize(out.len() + bits_len, 0xff);
    out
}

/// A chunk of `chunk_type` holding `data`, with a zero checksum.
pub fn chunk(chunk_type: u8, data: &[u8]) -> Vec<u8> {
    let mut out = wire::MAGIC_BYTES.to_vec();
    out.extend_from_slice(&[0; 4]);
    out.push(chunk_type);
    uleb(&mut out, data.len() as u64);
    out.extend_from_slice(data);
    out
}

/// Bits written as deflate packs them: fields least significant bit first, Huffman codes most
/// significant bit first.
#[derive(Debug, Default)]
pub struct BitWriter {
    out: Vec<u8>,
    acc: u8,
    n_bits: u32,
}

impl BitWriter {
    /// The low `count` bits of `value`, least significant first.
    pub fn bits(&mut self, value: u32, count: u32) {
        for i in 0..count {
            self.acc |= (((value >> i) & 1) as u8) << self.n_bits;
            self.n_bits += 1;
            if self.n_bits == 8 {
                self.out.push(self.acc);
                self.acc = 0;
                self.n_bits = 0;
            }
        }
    }

    /// A Huffman code of `len` bits, most significant first.
    pub fn code(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.bits((code >> i) & 1, 1);
        }
    }

    /// `count` zero bits, written a byte at a time where they can be.
    pub fn zeros(&mut self, mut count: u64) {
        while count > 0 && self.n_bits != 0 {
            self.bits(0, 1);
            count -= 1;
        }
        self.out.resize(self.out.len() + (count / 8) as usize, 0);
        self.bits(0, (count % 8) as u32);
    }

    /// Zero bits up to the next byte boundary, as before a stored block's length.
    pub fn align(&mut self) {
        while self.n_bits != 0 {
            self.bits(0, 1);
        }
    }

    /// Whole bytes, at a byte boundary.
    pub fn bytes(&mut self, bytes: &[u8]) {
        assert_eq!(self.n_bits, 0, "whole bytes start at a byte boundary");
        self.out.extend_from_slice(bytes);
    }

    /// The stream, its last byte padded with zero bits.
    pub fn finish(mut self) -> Vec<u8> {
        self.align();
        self.out
    }
}

/// A final dynamic-Huffman deflate block: a literal zero, then `n_matches` copies of "258 bytes
/// at distance 1", each coded in 2 bits, so it inflates to `1 + 258 * n_matches` zero bytes
/// (1032-fold).
fn zeros_block(w: &mut BitWriter, n_matches: u64) {
    w.bits(1, 1); // final block
    w.bits(2, 2); // dynamic Huffman codes
    w.bits(286 - 257, 5); // literal/length codes 0..=285
    w.bits(2 - 1, 5); // distance codes 0 and 1
    w.bits(18 - 4, 4); // code length codes, in the order below
    let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1];
    for symbol in order {
        let len = match symbol {
            18 => 1,
            1 | 2 => 2,
            _ => 0,
        };
        w.bits(len, 3);
    }
    // Code length codes: 18 (a run of 11..=138 zeros) = "0", 1 = "10", 2 = "11".
    w.code(0b11, 2); // literal 0: length 2
    w.code(0, 1); // 138 unused literals
    w.bits(138 - 11, 7);
    w.code(0, 1); // 117 more, up to 255
    w.bits(117 - 11, 7);
    w.code(0b11, 2); // end of block (256): length 2
    w.code(0, 1); // lengths 257..=284 unused
    w.bits(28 - 11, 7);
    w.code(0b10, 2); // length 258 (285): length 1
    w.code(0b10, 2); // distance 1: length 1
    w.code(0b10, 2); // distance 2: length 1
    // Literal/length codes: 285 = "0", 0 = "10", 256 = "11"; distances: 1 = "0".
    w.code(0b10, 2); // the literal zero
    w.zeros(2 * n_matches); // each match: length 258 ("0"), distance 1 ("0")
    w.code(0b11, 2); // end of block
}

/// A raw deflate stream of one block that inflates to `1 + 258 * n_matches` zero bytes
/// (1032-fold).
pub fn deflate_bomb(n_matches: u64) -> Vec<u8> {
    let mut w = BitWriter::default();
    zeros_block(&mut w, n_matches);
    w.finish()
}

/// A raw deflate stream of two blocks that inflates to `prefix`, then `1 + 258 * n_matches`
/// zero bytes: a stored block holding `prefix`, then [`deflate_bomb`]'s block.
pub fn deflate_padded(prefix: &[u8], n_matches: u64) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.bits(0, 1); // not the final block
    w.bits(0, 2); // stored
    w.align();
    let len = u16::try_from(prefix.len()).expect("a stored block holds at most 65535 bytes");
    w.bytes(&len.to_le_bytes());
    w.bytes(&(!len).to_le_bytes());
    w.bytes(prefix);
    zeros_block(&mut w, n_matches);
    w.finish()
}
