//! The field of integers mod p = 2^255 − 19 and the curve constants of docs/protocol.md 4.3.2.
//!
//! Field elements use five 51-bit limbs in `u64` with `u128` products rather than `BigUint`:
//! a handshake needs some 12 000 field multiplications, and a heap-allocating bignum with a
//! generic division for every reduction costs several times our whole time budget. The limb
//! form reduces with the special shape of p (2^255 ≡ 19) and never allocates. `BigUint` is
//! used only where it is cheap and clear: deriving the constants once, and the one reduction
//! mod r per handshake (in `srp`).
//!
//! None of this is constant time; see [`super::curve`] for why that matches the protocol.

use std::sync::LazyLock;

use num_bigint::BigUint;

/// The low 51 bits.
const MASK: u64 = (1 << 51) - 1;

/// Carries limb 0 into 1, 1 into 2, 2 into 3 and 3 into 4, leaving limbs 0 to 3 below 2^51
/// and whatever overflows in limb 4: the common first half of every carry in this file.
#[inline(always)]
fn ripple(l: [u64; 5]) -> [u64; 5] {
    let [mut l0, mut l1, mut l2, mut l3, mut l4] = l;
    l1 += l0 >> 51;
    l0 &= MASK;
    l2 += l1 >> 51;
    l1 &= MASK;
    l3 += l2 >> 51;
    l2 &= MASK;
    l4 += l3 >> 51;
    l3 &= MASK;
    [l0, l1, l2, l3, l4]
}

/// An element of GF(p), value = Σ limb[n]·2^(51·n). Limbs are kept below about 2^52 by every
/// operation, so the value may be non-canonical (≥ p); [`Fe::to_be_bytes`] canonicalises.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fe([u64; 5]);

impl Fe {
    pub(crate) const ZERO: Fe = Fe([0; 5]);
    pub(crate) const ONE: Fe = Fe([1, 0, 0, 0, 0]);

    /// A small constant.
    pub(crate) fn from_u64(v: u64) -> Fe {
        Fe::carry([v & MASK, v >> 51, 0, 0, 0])
    }

    /// Reads 32 big-endian bytes as an integer and reduces it mod p (bit 255 counts as 19).
    /// Callers that must reject x ≥ p check [`Fe::is_canonical_encoding`] first.
    pub(crate) fn from_be_bytes(bytes: &[u8; 32]) -> Fe {
        let mut w = [0u64; 4]; // little-endian 64-bit words
        for (word, chunk) in w.iter_mut().zip(bytes.rchunks_exact(8)) {
            *word = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        }
        let [w0, w1, w2, w3] = w;
        let top = w3 >> 63;
        Fe::carry([
            (w0 & MASK) + 19 * top,
            ((w0 >> 51) | (w1 << 13)) & MASK,
            ((w1 >> 38) | (w2 << 26)) & MASK,
            ((w2 >> 25) | (w3 << 39)) & MASK,
            (w3 >> 12) & MASK,
        ])
    }

    /// True if `bytes`, read big-endian, is an integer below p (the only form a peer may send).
    pub(crate) fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
        Fe::from_be_bytes(bytes).to_be_bytes() == *bytes
    }

    /// The canonical value (0 ≤ v < p) as exactly 32 big-endian bytes, zero-padded on the left.
    pub(crate) fn to_be_bytes(self) -> [u8; 32] {
        let Fe([mut l0, l1, l2, l3, l4]) = Fe::carry(self.0);
        // The value is now below 2p. q = 1 exactly when value + 19 reaches 2^255, i.e. ≥ p.
        let mut q = (l0 + 19) >> 51;
        q = (l1 + q) >> 51;
        q = (l2 + q) >> 51;
        q = (l3 + q) >> 51;
        q = (l4 + q) >> 51;
        // Subtract q·p = q·2^255 − 19q: add 19q, carry, and drop bit 255.
        l0 += 19 * q;
        let [l0, l1, l2, l3, l4] = ripple([l0, l1, l2, l3, l4]);
        let l4 = l4 & MASK;
        let words = [
            l0 | (l1 << 51),
            (l1 >> 13) | (l2 << 38),
            (l2 >> 26) | (l3 << 25),
            (l3 >> 39) | (l4 << 12),
        ];
        let mut out = [0u8; 32];
        for (chunk, word) in out.rchunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// Propagates carries so every limb is below 2^51 (limb 1 may exceed it by a few bits),
    /// folding the carry out of limb 4 back into limb 0 as ×19. Inputs must be below 2^58.
    fn carry(l: [u64; 5]) -> Fe {
        let [mut l0, mut l1, l2, l3, mut l4] = ripple(l);
        l0 += 19 * (l4 >> 51);
        l4 &= MASK;
        l1 += l0 >> 51;
        l0 &= MASK;
        Fe([l0, l1, l2, l3, l4])
    }

    pub(crate) fn add(&self, o: &Fe) -> Fe {
        let Fe([a0, a1, a2, a3, a4]) = *self;
        let Fe([b0, b1, b2, b3, b4]) = *o;
        Fe::carry([a0 + b0, a1 + b1, a2 + b2, a3 + b3, a4 + b4])
    }

    /// self − o, computed as self + 4p − o so that no limb underflows (o's limbs < 2^52).
    pub(crate) fn sub(&self, o: &Fe) -> Fe {
        const FOUR_P0: u64 = 4 * ((1 << 51) - 19);
        const FOUR_P: u64 = 4 * MASK;
        let Fe([a0, a1, a2, a3, a4]) = *self;
        let Fe([b0, b1, b2, b3, b4]) = *o;
        Fe::carry([
            a0 + FOUR_P0 - b0,
            a1 + FOUR_P - b1,
            a2 + FOUR_P - b2,
            a3 + FOUR_P - b3,
            a4 + FOUR_P - b4,
        ])
    }

    pub(crate) fn neg(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    /// Schoolbook 5×5 product; the terms that land at 2^255 and above are folded back ×19.
    pub(crate) fn mul(&self, o: &Fe) -> Fe {
        let [a0, a1, a2, a3, a4] = self.0.map(u128::from);
        let [b0, b1, b2, b3, b4] = o.0.map(u128::from);
        let (b1_19, b2_19, b3_19, b4_19) = (19 * b1, 19 * b2, 19 * b3, 19 * b4);
        // Each product is below 2^52·19·2^52 < 2^109, so the sums fit easily in u128.
        let r0 = a0 * b0 + a1 * b4_19 + a2 * b3_19 + a3 * b2_19 + a4 * b1_19;
        let r1 = a0 * b1 + a1 * b0 + a2 * b4_19 + a3 * b3_19 + a4 * b2_19;
        let r2 = a0 * b2 + a1 * b1 + a2 * b0 + a3 * b4_19 + a4 * b3_19;
        let r3 = a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0 + a4 * b4_19;
        let r4 = a0 * b4 + a1 * b3 + a2 * b2 + a3 * b1 + a4 * b0;
        Fe::reduce_wide([r0, r1, r2, r3, r4])
    }

    /// Carries a wide product (each term below 2^115) back into five limbs.
    fn reduce_wide(r: [u128; 5]) -> Fe {
        let [r0, r1, r2, r3, r4] = r;
        let m = u128::from(MASK);
        let r1 = r1 + (r0 >> 51);
        let r2 = r2 + (r1 >> 51);
        let r3 = r3 + (r2 >> 51);
        let r4 = r4 + (r3 >> 51);
        // The carry out of r4 is below 2^64; ×19 needs u128 before it is folded in.
        let l0 = (r0 & m) + 19 * (r4 >> 51);
        let l1 = (r1 & m) + (l0 >> 51);
        // Every value below is now under 2^52, so the narrowing casts are exact.
        Fe([
            (l0 & m) as u64,
            l1 as u64,
            (r2 & m) as u64,
            (r3 & m) as u64,
            (r4 & m) as u64,
        ])
    }

    /// self², with the symmetric products computed once (15 multiplications instead of 25;
    /// squarings are most of the work in doubling and in exponentiation).
    pub(crate) fn square(&self) -> Fe {
        let [a0, a1, a2, a3, a4] = self.0.map(u128::from);
        let (d0, d1, d2) = (2 * a0, 2 * a1, 2 * a2);
        let (a3_19, a4_19) = (19 * a3, 19 * a4);
        Fe::reduce_wide([
            a0 * a0 + d1 * a4_19 + d2 * a3_19,
            d0 * a1 + d2 * a4_19 + a3 * a3_19,
            d0 * a2 + a1 * a1 + 2 * a3 * a4_19,
            d0 * a3 + d1 * a2 + a4 * a4_19,
            d0 * a4 + d1 * a3 + a2 * a2,
        ])
    }

    /// self^e for a big-endian exponent, left-to-right square-and-multiply.
    pub(crate) fn pow(&self, e: &[u8; 32]) -> Fe {
        let mut acc = Fe::ONE;
        for byte in e {
            for bit in (0..8).rev() {
                acc = acc.square();
                if (byte >> bit) & 1 == 1 {
                    acc = acc.mul(self);
                }
            }
        }
        acc
    }

    /// 1/self by Fermat (self^(p−2)); 0 maps to 0, which callers rule out beforehand.
    /// Measured on the target machine with varied inputs: 9.5 µs, against 27 µs for
    /// `BigUint::modinv` (extended Euclid, allocating). A handshake inverts two or three times.
    pub(crate) fn invert(&self) -> Fe {
        self.pow(&FIELD.exp_invert)
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.to_be_bytes() == [0u8; 32]
    }

    pub(crate) fn equals(&self, o: &Fe) -> bool {
        self.to_be_bytes() == o.to_be_bytes()
    }

    /// The least significant bit of the canonical value: the "parity" of a y coordinate.
    pub(crate) fn is_odd(&self) -> bool {
        self.to_be_bytes().last().is_some_and(|b| b & 1 == 1)
    }
}

/// The field and curve constants of docs/protocol.md 4.3.2, derived once from their definitions.
pub(crate) struct FieldConsts {
    /// Weierstrass a = (3 − A²)/3.
    pub(crate) a: Fe,
    /// Weierstrass b = (2A³ − 9A)/27 (only used to check points in tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) b: Fe,
    /// k = A/3, the shift between Montgomery and Weierstrass x.
    pub(crate) k: Fe,
    /// The Montgomery coefficient A = 486662.
    pub(crate) mont_a: Fe,
    /// A square root of −1, 2^((p−1)/4), for square roots when p ≡ 5 (mod 8).
    pub(crate) sqrt_m1: Fe,
    /// p − 2.
    exp_invert: [u8; 32],
    /// (p + 3)/8.
    pub(crate) exp_sqrt: [u8; 32],
    /// The prime order r of the subgroup generated by G.
    pub(crate) r: BigUint,
}

/// Right-aligns a non-negative integer in 32 big-endian bytes (keeping leading zeros: an x
/// coordinate with a leading zero byte must still be 32 bytes long on the wire).
pub(crate) fn be32(n: &BigUint) -> [u8; 32] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; 32];
    let take = bytes.len().min(32);
    for (o, b) in out.iter_mut().rev().zip(bytes.iter().rev().take(take)) {
        *o = *b;
    }
    out
}

pub(crate) static FIELD: LazyLock<FieldConsts> = LazyLock::new(|| {
    let p = (BigUint::from(1u8) << 255u32) - BigUint::from(19u8);
    let exp_invert = be32(&(&p - BigUint::from(2u8)));
    let exp_sqrt = be32(&((&p + BigUint::from(3u8)) >> 3u32));
    let exp_sqrt_m1 = be32(&((&p - BigUint::from(1u8)) >> 2u32));
    let r = (BigUint::from(1u8) << 252u32)
        + BigUint::parse_bytes(b"27742317777372353535851937790883648493", 10).unwrap_or_default();
    let mont_a = Fe::from_u64(486_662);
    let inv3 = Fe::from_u64(3).pow(&exp_invert);
    let inv27 = Fe::from_u64(27).pow(&exp_invert);
    let a_sq = mont_a.square();
    FieldConsts {
        a: Fe::from_u64(3).sub(&a_sq).mul(&inv3),
        b: a_sq
            .mul(&mont_a)
            .add(&a_sq.mul(&mont_a))
            .sub(&mont_a.mul(&Fe::from_u64(9)))
            .mul(&inv27),
        k: mont_a.mul(&inv3),
        mont_a,
        sqrt_m1: Fe::from_u64(2).pow(&exp_sqrt_m1),
        exp_invert,
        exp_sqrt,
        r,
    }
});

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> BigUint {
        (BigUint::from(1u8) << 255u32) - BigUint::from(19u8)
    }

    fn big(f: &Fe) -> BigUint {
        BigUint::from_bytes_be(&f.to_be_bytes())
    }

    /// A cheap deterministic generator for test inputs (xorshift).
    fn next(state: &mut u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        for b in out.iter_mut() {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *b = *state as u8;
        }
        out
    }

    #[test]
    fn field_ops_match_biguint() {
        let p = p();
        let mut s = 0x1234_5678_9abc_def0;
        let mut specials = vec![
            [0u8; 32],
            [0xff; 32],
            be32(&(&p - 1u8)),
            be32(&p),
            be32(&(&p + 1u8)),
        ];
        for _ in 0..300 {
            specials.push(next(&mut s));
        }
        for w in specials.windows(2) {
            let (a, b) = (Fe::from_be_bytes(&w[0]), Fe::from_be_bytes(&w[1]));
            let (ba, bb) = (
                BigUint::from_bytes_be(&w[0]) % &p,
                BigUint::from_bytes_be(&w[1]) % &p,
            );
            assert_eq!(big(&a), ba);
            assert_eq!(big(&a.mul(&b)), (&ba * &bb) % &p);
            assert_eq!(big(&a.square()), (&ba * &ba) % &p);
            assert_eq!(big(&a.add(&b)), (&ba + &bb) % &p);
            assert_eq!(big(&a.sub(&b)), (&ba + &p - &bb) % &p);
            assert_eq!(big(&a.neg()), (&p - &ba) % &p);
            if ba != BigUint::from(0u8) {
                assert_eq!(big(&a.mul(&a.invert())), BigUint::from(1u8));
            }
            // Chains of operations keep limbs in range.
            let mut c = a;
            for _ in 0..20 {
                c = c.add(&c).sub(&b).mul(&c).add(&a);
            }
            let mut bc = ba.clone();
            for _ in 0..20 {
                bc = ((&bc + &bc + &p - &bb) % &p * &bc + &ba) % &p;
            }
            assert_eq!(big(&c), bc);
        }
    }

    #[test]
    fn canonical_encoding_rejects_p_and_above() {
        let p = p();
        assert!(Fe::is_canonical_encoding(&be32(&(&p - 1u8))));
        assert!(!Fe::is_canonical_encoding(&be32(&p)));
        assert!(!Fe::is_canonical_encoding(&[0xff; 32]));
        assert!(Fe::is_canonical_encoding(&[0; 32]));
    }
}
