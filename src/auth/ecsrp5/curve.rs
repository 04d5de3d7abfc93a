//! Arithmetic for EC-SRP5: the field of integers mod p = 2^255 − 19 and Curve25519 written in
//! short Weierstrass form `y² = x³ + a·x + b` (docs/protocol.md 4.3.2).
//!
//! Field elements use five 51-bit limbs in `u64` with `u128` products rather than `BigUint`:
//! a handshake needs some 12 000 field multiplications, and a heap-allocating bignum with a
//! generic division for every reduction costs several times our whole time budget. The limb
//! form reduces with the special shape of p (2^255 ≡ 19) and never allocates.
//!
//! Points are kept in Jacobian coordinates (X, Y, Z) ↔ (X/Z², Y/Z³) so that a scalar
//! multiplication needs a single inversion, at the end. `BigUint` is used only where it is
//! cheap and clear: deriving the constants once, and the one reduction mod r per handshake.
//!
//! None of this is constant time (the window lookups and the special cases of addition
//! branch on secret data). That matches every known implementation of this protocol; the
//! secrets involved are ephemeral per handshake except the password-derived `i` on a client.

use std::sync::LazyLock;

use num_bigint::BigUint;

/// The low 51 bits.
const MASK: u64 = (1 << 51) - 1;

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
        let Fe([mut l0, mut l1, mut l2, mut l3, mut l4]) = Fe::carry(self.0);
        // The value is now below 2p. q = 1 exactly when value + 19 reaches 2^255, i.e. ≥ p.
        let mut q = (l0 + 19) >> 51;
        q = (l1 + q) >> 51;
        q = (l2 + q) >> 51;
        q = (l3 + q) >> 51;
        q = (l4 + q) >> 51;
        // Subtract q·p = q·2^255 − 19q: add 19q, carry, and drop bit 255.
        l0 += 19 * q;
        l1 += l0 >> 51;
        l0 &= MASK;
        l2 += l1 >> 51;
        l1 &= MASK;
        l3 += l2 >> 51;
        l2 &= MASK;
        l4 += l3 >> 51;
        l3 &= MASK;
        l4 &= MASK;
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
        let [mut l0, mut l1, mut l2, mut l3, mut l4] = l;
        l1 += l0 >> 51;
        l0 &= MASK;
        l2 += l1 >> 51;
        l1 &= MASK;
        l3 += l2 >> 51;
        l2 &= MASK;
        l4 += l3 >> 51;
        l3 &= MASK;
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
    exp_sqrt: [u8; 32],
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

/// An affine point on the Weierstrass curve (never the point at infinity).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Affine {
    pub(crate) x: Fe,
    pub(crate) y: Fe,
}

impl Affine {
    /// The Montgomery x (= x − k) as 32 big-endian bytes: how a point travels on the wire.
    pub(crate) fn mont_x(&self) -> [u8; 32] {
        self.x.sub(&FIELD.k).to_be_bytes()
    }

    /// The parity bit sent beside the x: the lowest bit of y.
    pub(crate) fn parity(&self) -> bool {
        self.y.is_odd()
    }

    /// True if 8·P is the point at infinity, i.e. P lies in the small subgroup of order
    /// dividing the cofactor (such as Montgomery x = 0, the point of order 2). Honest keys
    /// never do; a peer sending one would force the shared secret into at most 8 values.
    pub(crate) fn has_small_order(&self) -> bool {
        Jacobian::from(*self)
            .double()
            .double()
            .double()
            .is_infinity()
    }
}

/// `lift_x(u, parity)`: the point whose Montgomery x is u (already reduced mod p) and whose y
/// has the given lowest bit, or None if u³ + A·u² + u is not a square (no such point).
pub(crate) fn lift_x(u: &Fe, parity: bool) -> Option<Affine> {
    let f = &*FIELD;
    let t = u.add(&f.mont_a).mul(u).add(&Fe::ONE).mul(u);
    // For p ≡ 5 (mod 8), t^((p+3)/8) squares to ±t when t is a square.
    let mut y = t.pow(&f.exp_sqrt);
    if !y.square().equals(&t) {
        y = y.mul(&f.sqrt_m1);
        if !y.square().equals(&t) {
            return None;
        }
    }
    if y.is_odd() != parity {
        y = y.neg();
    }
    Some(Affine { x: u.add(&f.k), y })
}

/// A point in Jacobian coordinates; Z = 0 is the point at infinity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl From<Affine> for Jacobian {
    fn from(p: Affine) -> Jacobian {
        Jacobian {
            x: p.x,
            y: p.y,
            z: Fe::ONE,
        }
    }
}

impl Jacobian {
    pub(crate) const INFINITY: Jacobian = Jacobian {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    pub(crate) fn is_infinity(&self) -> bool {
        self.z.is_zero()
    }

    /// 2·P ("dbl-2007-bl", valid for any a). A point with y = 0 doubles to Z = 0, infinity.
    pub(crate) fn double(&self) -> Jacobian {
        let xx = self.x.square();
        let yy = self.y.square();
        let yyyy = yy.square();
        let zz = self.z.square();
        let s = self.x.add(&yy).square().sub(&xx).sub(&yyyy);
        let s = s.add(&s);
        let m = xx.add(&xx).add(&xx).add(&FIELD.a.mul(&zz.square()));
        let x3 = m.square().sub(&s.add(&s));
        let y8 = yyyy.add(&yyyy);
        let y8 = y8.add(&y8);
        let y8 = y8.add(&y8);
        let y3 = m.mul(&s.sub(&x3)).sub(&y8);
        let z3 = self.y.add(&self.z).square().sub(&yy).sub(&zz);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// P + Q ("add-2007-bl"), with the special cases the formula cannot take: either input at
    /// infinity, P = Q (double) and P = −Q (infinity).
    pub(crate) fn add(&self, o: &Jacobian) -> Jacobian {
        if self.is_infinity() {
            return *o;
        }
        if o.is_infinity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = o.z.square();
        let u1 = self.x.mul(&z2z2);
        let u2 = o.x.mul(&z1z1);
        let s1 = self.y.mul(&o.z).mul(&z2z2);
        let s2 = o.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&u1);
        let rr = s2.sub(&s1);
        if h.is_zero() {
            return if rr.is_zero() {
                self.double()
            } else {
                Jacobian::INFINITY
            };
        }
        let h2 = h.add(&h);
        let i = h2.square();
        let j = h.mul(&i);
        let r = rr.add(&rr);
        let v = u1.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.add(&v));
        let s1j = s1.mul(&j);
        let y3 = r.mul(&v.sub(&x3)).sub(&s1j.add(&s1j));
        let z3 = self.z.add(&o.z).square().sub(&z1z1).sub(&z2z2).mul(&h);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// Back to affine with one inversion; None for the point at infinity.
    pub(crate) fn to_affine(self) -> Option<Affine> {
        if self.is_infinity() {
            return None;
        }
        let zinv = self.z.invert();
        let zinv2 = zinv.square();
        Some(Affine {
            x: self.x.mul(&zinv2),
            y: self.y.mul(&zinv2).mul(&zinv),
        })
    }

    /// k·P for a 256-bit big-endian k, used as is (not clamped, not reduced): a fixed 4-bit
    /// window, i.e. double-and-add that consumes four bits per addition.
    pub(crate) fn mul(&self, k: &[u8; 32]) -> Jacobian {
        let table = multiples(self);
        let mut acc = Jacobian::INFINITY;
        for byte in k {
            for nibble in [byte >> 4, byte & 0x0f] {
                if !acc.is_infinity() {
                    acc = acc.double().double().double().double();
                }
                if let Some(t) = table.get(usize::from(nibble)).filter(|_| nibble != 0) {
                    acc = acc.add(t);
                }
            }
        }
        acc
    }
}

/// [0·P, 1·P, …, 15·P].
fn multiples(p: &Jacobian) -> [Jacobian; 16] {
    let mut table = [Jacobian::INFINITY; 16];
    let mut acc = Jacobian::INFINITY;
    for slot in table.iter_mut() {
        *slot = acc;
        acc = acc.add(p);
    }
    table
}

/// The generator and its precomputed multiples, built once.
pub(crate) struct Base {
    /// G = lift_x(9, 0) (only read by tests; the table holds its multiples).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) g: Affine,
    /// Row n holds d·16ⁿ·G for d = 0..15, so k·G is one addition per non-zero nibble of k and
    /// no doubling at all.
    table: Vec<[Jacobian; 16]>,
}

pub(crate) static BASE: LazyLock<Base> = LazyLock::new(|| {
    // lift_x(9, even) exists: it is the standard Curve25519 base point. Should it somehow not
    // (it cannot), every product with G would be infinity and every handshake would fail
    // cleanly with a "point at infinity" error, rather than panicking.
    let g = lift_x(&Fe::from_u64(9), false).unwrap_or(Affine {
        x: Fe::ZERO,
        y: Fe::ZERO,
    });
    let mut table = Vec::with_capacity(64);
    let mut row_base = Jacobian::from(g);
    for _ in 0..64 {
        let row = multiples(&row_base);
        row_base = row_base.double().double().double().double();
        table.push(row);
    }
    Base { g, table }
});

/// k·G using the precomputed table (k big-endian, 256 bits, unreduced).
pub(crate) fn mul_base(k: &[u8; 32]) -> Jacobian {
    let nibbles_lsb_first = k.iter().rev().flat_map(|b| [b & 0x0f, b >> 4]);
    let mut acc = Jacobian::INFINITY;
    for (row, nibble) in BASE.table.iter().zip(nibbles_lsb_first) {
        if let Some(t) = row.get(usize::from(nibble)).filter(|_| nibble != 0) {
            acc = acc.add(t);
        }
    }
    acc
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn p() -> BigUint {
        (BigUint::from(1u8) << 255u32) - BigUint::from(19u8)
    }

    fn big(f: &Fe) -> BigUint {
        BigUint::from_bytes_be(&f.to_be_bytes())
    }

    fn hex32(s: &str) -> [u8; 32] {
        let n = BigUint::parse_bytes(s.as_bytes(), 16).unwrap();
        be32(&n)
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

    #[test]
    fn constants_match_protocol() {
        let f = &*FIELD;
        assert_eq!(
            f.a.to_be_bytes(),
            hex32("2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa984914a144")
        );
        assert_eq!(
            f.b.to_be_bytes(),
            hex32("7b425ed097b425ed097b425ed097b425ed097b425ed097b4260b5e9c7710c864")
        );
        assert_eq!(
            f.k.to_be_bytes(),
            hex32("2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaad2451")
        );
        assert_eq!(
            be32(&f.r),
            hex32("1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed")
        );
        let g = BASE.g;
        assert_eq!(
            g.x.to_be_bytes(),
            hex32("2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaad245a")
        );
        assert_eq!(
            g.y.to_be_bytes(),
            hex32("5f51e65e475f794b1fe122d388b72eb36dc2b28192839e4dd6163a5d81312c14")
        );
        // G is on y² = x³ + a·x + b and r·G is infinity.
        let rhs = g.x.square().mul(&g.x).add(&f.a.mul(&g.x)).add(&f.b);
        assert!(g.y.square().equals(&rhs));
        assert!(mul_base(&be32(&f.r)).is_infinity());
        assert!(Jacobian::from(g).mul(&be32(&f.r)).is_infinity());
    }

    #[test]
    fn base_table_matches_generic_multiplication() {
        let mut s = 42;
        for _ in 0..20 {
            let k = next(&mut s);
            let a = mul_base(&k).to_affine().unwrap();
            let b = Jacobian::from(BASE.g).mul(&k).to_affine().unwrap();
            assert!(a.x.equals(&b.x) && a.y.equals(&b.y));
        }
        assert!(mul_base(&[0; 32]).is_infinity());
    }

    #[test]
    fn small_order_points() {
        // Montgomery x = 0 is the point of order 2.
        let p0 = lift_x(&Fe::ZERO, false).unwrap();
        assert!(p0.has_small_order());
        assert!(!BASE.g.has_small_order());
    }
}
