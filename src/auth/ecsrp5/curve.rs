//! Curve25519 written in short Weierstrass form `y² = x³ + a·x + b` (docs/protocol.md 4.3.2),
//! over the field of [`super::field`].
//!
//! Points are kept in Jacobian coordinates (X, Y, Z) ↔ (X/Z², Y/Z³) so that a scalar
//! multiplication needs a single inversion, at the end.
//!
//! None of this is constant time (the window lookups and the special cases of addition
//! branch on secret data). That matches every known implementation of this protocol; the
//! secrets involved are ephemeral per handshake except the password-derived `i` on a client.

use std::sync::LazyLock;

use super::field::{FIELD, Fe};

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

#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ecsrp5::field::be32;
    use num_bigint::BigUint;

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
