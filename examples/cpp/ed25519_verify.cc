// Ed25519 verification from RFC 8032 (sections 5.1.1-5.1.4 and 5.1.7).
//
// Field elements mod p = 2^255 - 19 are 8 little-endian 32-bit limbs holding a value < 2^256
// (not always fully reduced: 2^256 = 38 mod p folds any carry back in); products use 64-bit
// accumulators, so the code is portable C++ (no __int128, fine on 32-bit ARM too). Points are
// extended coordinates (X:Y:Z:T), x = X/Z, y = Y/Z, xy = T/Z, added with the RFC's complete
// formula (which also doubles). Scalars are plain 256-bit numbers; the 512-bit hash is reduced
// mod L bit by bit. Speed is irrelevant here (one verification per artifact load, ~1 ms).
#include "ed25519_verify.h"

#include <cstring>

#include "sha2.h"

namespace artifact {
namespace {

struct Fe {
  uint32_t v[8];
};

Fe FeSmall(uint32_t x) {
  Fe r{};
  r.v[0] = x;
  return r;
}

// 2^k - c as a 256-bit number (for the exponents p - 2, (p - 5) / 8, (p - 1) / 4 and p itself).
Fe PowTwoMinus(int k, uint32_t c) {
  Fe r{};
  r.v[k / 32] = uint32_t(1) << (k % 32);
  uint64_t borrow = c;
  for (int i = 0; i < 8 && borrow; ++i) {
    uint64_t t = uint64_t(r.v[i]) - borrow;
    r.v[i] = uint32_t(t);
    borrow = (t >> 32) ? 1 : 0;
  }
  return r;
}

const Fe kP = PowTwoMinus(255, 19);

// r = a + 38 * carry, repeated until no carry leaves the top limb (2^256 = 38 mod p).
void FoldCarry(Fe* r, uint64_t carry) {
  while (carry) {
    uint64_t c = carry * 38;
    for (int i = 0; i < 8; ++i) {
      uint64_t t = uint64_t(r->v[i]) + (c & 0xffffffffu);
      r->v[i] = uint32_t(t);
      c = (c >> 32) + (t >> 32);
    }
    carry = c;
  }
}

Fe Add(const Fe& a, const Fe& b) {
  Fe r;
  uint64_t carry = 0;
  for (int i = 0; i < 8; ++i) {
    uint64_t t = uint64_t(a.v[i]) + b.v[i] + carry;
    r.v[i] = uint32_t(t);
    carry = t >> 32;
  }
  FoldCarry(&r, carry);
  return r;
}

Fe Sub(const Fe& a, const Fe& b) {
  Fe r;
  int64_t borrow = 0;
  for (int i = 0; i < 8; ++i) {
    int64_t t = int64_t(a.v[i]) - b.v[i] - borrow;
    r.v[i] = uint32_t(t);
    borrow = t < 0 ? 1 : 0;
  }
  // A borrow means r = a - b + 2^256; subtract 2^256 = 38 (mod p), again if that borrows.
  while (borrow) {
    int64_t c = 38;
    borrow = 0;
    for (int i = 0; i < 8; ++i) {
      int64_t t = int64_t(r.v[i]) - c;
      r.v[i] = uint32_t(t);
      c = t < 0 ? 1 : 0;
    }
    borrow = c;
  }
  return r;
}

Fe Mul(const Fe& a, const Fe& b) {
  uint32_t w[16] = {0};
  for (int i = 0; i < 8; ++i) {
    uint64_t carry = 0;
    for (int j = 0; j < 8; ++j) {
      uint64_t t = uint64_t(a.v[i]) * b.v[j] + w[i + j] + carry;
      w[i + j] = uint32_t(t);
      carry = t >> 32;
    }
    w[i + 8] = uint32_t(carry);
  }
  // low + 38 * high, then fold what is left above 2^256.
  Fe r;
  uint64_t carry = 0;
  for (int i = 0; i < 8; ++i) {
    uint64_t t = uint64_t(w[i + 8]) * 38 + w[i] + carry;
    r.v[i] = uint32_t(t);
    carry = t >> 32;
  }
  FoldCarry(&r, carry);
  return r;
}

bool GreaterEq(const Fe& a, const Fe& b) {
  for (int i = 7; i >= 0; --i)
    if (a.v[i] != b.v[i]) return a.v[i] > b.v[i];
  return true;
}

// The representative in [0, p): values are < 2^256 < 3p, so at most two subtractions.
Fe Canon(Fe a) {
  while (GreaterEq(a, kP)) {
    int64_t borrow = 0;
    for (int i = 0; i < 8; ++i) {
      int64_t t = int64_t(a.v[i]) - kP.v[i] - borrow;
      a.v[i] = uint32_t(t);
      borrow = t < 0 ? 1 : 0;
    }
  }
  return a;
}

bool Equal(const Fe& a, const Fe& b) {
  Fe x = Canon(a), y = Canon(b);
  return std::memcmp(x.v, y.v, sizeof x.v) == 0;
}

bool IsZero(const Fe& a) { return Equal(a, FeSmall(0)); }

// a^e for a 256-bit exponent, square-and-multiply from the top bit.
Fe Pow(const Fe& a, const Fe& e) {
  Fe r = FeSmall(1);
  for (int bit = 255; bit >= 0; --bit) {
    r = Mul(r, r);
    if ((e.v[bit / 32] >> (bit % 32)) & 1) r = Mul(r, a);
  }
  return r;
}

Fe Invert(const Fe& a) { return Pow(a, PowTwoMinus(255, 21)); }  // a^(p-2), Fermat

Fe FromBytes(const uint8_t b[32]) {
  Fe r;
  for (int i = 0; i < 8; ++i)
    r.v[i] = uint32_t(b[4 * i]) | uint32_t(b[4 * i + 1]) << 8 | uint32_t(b[4 * i + 2]) << 16 |
             uint32_t(b[4 * i + 3]) << 24;
  return r;
}

void ToBytes(const Fe& a, uint8_t out[32]) {
  Fe c = Canon(a);
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 4; ++j) out[4 * i + j] = uint8_t(c.v[i] >> (8 * j));
}

// ---- the curve: -x^2 + y^2 = 1 + d x^2 y^2 ------------------------------------------------

struct Point {
  Fe x, y, z, t;
};

struct Curve {
  Fe d, d2, sqrt_m1;
  Point base;
  bool ok = false;
};

Point Identity() { return Point{FeSmall(0), FeSmall(1), FeSmall(1), FeSmall(0)}; }

// RFC 8032 5.1.4 addition (complete: also right for P == Q).
Point AddPoints(const Curve& c, const Point& p, const Point& q) {
  Fe a = Mul(Sub(p.y, p.x), Sub(q.y, q.x));
  Fe b = Mul(Add(p.y, p.x), Add(q.y, q.x));
  Fe cc = Mul(Mul(p.t, c.d2), q.t);
  Fe dd = Mul(Add(p.z, p.z), q.z);
  Fe e = Sub(b, a), f = Sub(dd, cc), g = Add(dd, cc), h = Add(b, a);
  return Point{Mul(e, f), Mul(g, h), Mul(f, g), Mul(e, h)};
}

Point Negate(const Point& p) { return Point{Sub(FeSmall(0), p.x), p.y, p.z, Sub(FeSmall(0), p.t)}; }

// [s]P for a little-endian 32-byte scalar s, double-and-add from the top bit.
Point ScalarMul(const Curve& c, const uint8_t s[32], const Point& p) {
  Point r = Identity();
  for (int bit = 255; bit >= 0; --bit) {
    r = AddPoints(c, r, r);
    if ((s[bit / 8] >> (bit % 8)) & 1) r = AddPoints(c, r, p);
  }
  return r;
}

void Encode(const Point& p, uint8_t out[32]) {
  Fe zi = Invert(p.z);
  Fe x = Canon(Mul(p.x, zi)), y = Mul(p.y, zi);
  ToBytes(y, out);
  out[31] |= uint8_t((x.v[0] & 1) << 7);
}

// RFC 8032 5.1.3: y (255 bits, must be < p) and the sign of x; false when no such point exists.
bool Decode(const Curve& c, const uint8_t in[32], Point* out) {
  uint8_t yb[32];
  std::memcpy(yb, in, 32);
  const int x_sign = yb[31] >> 7;
  yb[31] &= 0x7f;
  Fe y = FromBytes(yb);
  if (GreaterEq(y, kP)) return false;
  Fe one = FeSmall(1);
  Fe y2 = Mul(y, y);
  Fe u = Sub(y2, one);
  Fe v = Add(Mul(c.d, y2), one);
  // x = u v^3 (u v^7)^((p-5)/8), the candidate square root of u / v.
  Fe v3 = Mul(Mul(v, v), v);
  Fe v7 = Mul(Mul(v3, v3), v);
  Fe x = Mul(Mul(u, v3), Pow(Mul(u, v7), PowTwoMinus(252, 3)));
  Fe vx2 = Mul(v, Mul(x, x));
  if (Equal(vx2, u)) {
    // x is a root
  } else if (Equal(vx2, Sub(FeSmall(0), u))) {
    x = Mul(x, c.sqrt_m1);
  } else {
    return false;
  }
  x = Canon(x);
  if (IsZero(x) && x_sign == 1) return false;
  if (int(x.v[0] & 1) != x_sign) x = Sub(FeSmall(0), x);
  *out = Point{x, y, one, Mul(x, y)};
  return true;
}

const Curve& TheCurve() {
  static const Curve curve = [] {
    Curve c;
    // d = -121665 / 121666, sqrt(-1) = 2^((p-1)/4) (RFC 8032 5.1 and 5.1.3).
    c.d = Mul(Sub(FeSmall(0), FeSmall(121665)), Invert(FeSmall(121666)));
    c.d2 = Add(c.d, c.d);
    c.sqrt_m1 = Pow(FeSmall(2), PowTwoMinus(253, 5));
    // B: y = 4/5, x even ("positive").
    Fe y = Mul(FeSmall(4), Invert(FeSmall(5)));
    uint8_t yb[32];
    ToBytes(y, yb);
    c.ok = Decode(c, yb, &c.base);
    return c;
  }();
  return curve;
}

// ---- scalars mod L = 2^252 + 27742317777372353535851937790883648493 -------------------------

const uint8_t kL[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                        0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
                        0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};

// a >= b for little-endian byte strings of n bytes
bool BytesGreaterEq(const uint8_t* a, const uint8_t* b, int n) {
  for (int i = n - 1; i >= 0; --i)
    if (a[i] != b[i]) return a[i] > b[i];
  return true;
}

// h (64 bytes, little-endian) mod L, as 32 bytes: r = 2r + bit, minus L when r >= L.
void ReduceModL(const uint8_t h[64], uint8_t out[32]) {
  uint8_t r[33] = {0}, l[33] = {0};
  std::memcpy(l, kL, 32);
  for (int bit = 511; bit >= 0; --bit) {
    int carry = (h[bit / 8] >> (bit % 8)) & 1;
    for (int i = 0; i < 33; ++i) {
      int t = (r[i] << 1) | carry;
      r[i] = uint8_t(t);
      carry = t >> 8;
    }
    if (BytesGreaterEq(r, l, 33)) {
      int borrow = 0;
      for (int i = 0; i < 33; ++i) {
        int t = int(r[i]) - l[i] - borrow;
        r[i] = uint8_t(t);
        borrow = t < 0 ? 1 : 0;
      }
    }
  }
  std::memcpy(out, r, 32);
}

}  // namespace

bool Ed25519Verify(const uint8_t pub[32], const uint8_t* msg, size_t len, const uint8_t sig[64]) {
  const Curve& c = TheCurve();
  if (!c.ok) return false;
  const uint8_t* r_bytes = sig;
  const uint8_t* s_bytes = sig + 32;
  if (BytesGreaterEq(s_bytes, kL, 32)) return false;  // S must be < L (malleability)
  Point a;
  if (!Decode(c, pub, &a)) return false;
  Sha512 h;
  h.Update(r_bytes, 32);
  h.Update(pub, 32);
  h.Update(msg, len);
  auto digest = h.Digest();
  uint8_t k[32];
  ReduceModL(digest.data(), k);
  Point check = AddPoints(c, ScalarMul(c, s_bytes, c.base), ScalarMul(c, k, Negate(a)));
  uint8_t enc[32];
  Encode(check, enc);
  return std::memcmp(enc, r_bytes, 32) == 0;
}

bool Ed25519SelfTest() {
  const Curve& c = TheCurve();
  if (!c.ok) return false;
  // sqrt(-1)^2 = -1; d (x 121666) = -121665; [L]B = identity; [1]B = B.
  if (!Equal(Mul(c.sqrt_m1, c.sqrt_m1), Sub(FeSmall(0), FeSmall(1)))) return false;
  if (!Equal(Mul(c.d, FeSmall(121666)), Sub(FeSmall(0), FeSmall(121665)))) return false;
  uint8_t enc[32], id[32], one[32] = {1}, b_enc[32];
  Encode(ScalarMul(c, kL, c.base), enc);
  Encode(Identity(), id);
  Encode(ScalarMul(c, one, c.base), b_enc);
  uint8_t b_direct[32];
  Encode(c.base, b_direct);
  return std::memcmp(enc, id, 32) == 0 && std::memcmp(b_enc, b_direct, 32) == 0 &&
         (b_direct[31] >> 7) == 0;
}

}  // namespace artifact
