//! Redis Cluster key slots: which slot a key hashes to, and how to name a companion key (the
//! lock's fence counter) so that it always lands in the same slot as the key it belongs to.

use std::sync::OnceLock;

/// CRC16/XMODEM as Redis Cluster uses it.
fn crc16(data: &[u8]) -> u16 {
  let mut crc: u16 = 0;
  for &b in data {
    crc ^= (b as u16) << 8;
    for _ in 0..8 {
      crc = if crc & 0x8000 != 0 {
        (crc << 1) ^ 0x1021
      } else {
        crc << 1
      };
    }
  }
  crc
}

/// The part of a key that is hashed: the first non-empty `{...}`, else the whole key.
fn hash_part(key: &[u8]) -> &[u8] {
  if let Some(open) = key.iter().position(|&b| b == b'{') {
    if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
      if len > 0 {
        return &key[open + 1..open + 1 + len];
      }
    }
  }
  key
}

/// Whether `key` has a hash tag (a non-empty `{...}`) that decides its slot.
pub fn has_tag(key: &[u8]) -> bool {
  hash_part(key).len() != key.len()
}

/// The cluster slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
  crc16(hash_part(key)) % 16384
}

/// Split a batch into groups that one script call can serve: by slot in a cluster (every key of
/// a script must hash to one slot), one group otherwise.
pub fn groups<'a, I: IntoIterator<Item = &'a [u8]>>(keys: I, cluster: bool) -> Vec<Vec<usize>> {
  let mut by_slot: std::collections::HashMap<u16, Vec<usize>> = Default::default();
  let mut all = Vec::new();
  for (i, k) in keys.into_iter().enumerate() {
    if cluster {
      by_slot.entry(key_slot(k)).or_default().push(i);
    } else {
      all.push(i);
    }
  }
  if cluster {
    by_slot.into_values().collect()
  } else {
    vec![all]
  }
}

/// For every slot, a short tag that hashes to it (built once, ~16k entries).
fn tags() -> &'static Vec<String> {
  static T: OnceLock<Vec<String>> = OnceLock::new();
  T.get_or_init(|| {
    let mut t: Vec<Option<String>> = vec![None; 16384];
    let mut left = 16384;
    let mut i: u64 = 0;
    while left > 0 {
      let s = format!("{i:x}");
      let slot = key_slot(s.as_bytes()) as usize;
      if t[slot].is_none() {
        t[slot] = Some(s);
        left -= 1;
      }
      i += 1;
    }
    t.into_iter().map(|s| s.unwrap_or_default()).collect()
  })
}

/// A companion key of `key` (which starts with `lead`, e.g. the lock prefix) with `suffix`, in
/// the same slot and still starting with `lead` (so an ACL pattern such as `~lock:*` covers
/// it): `key + suffix` when the key already carries a hash tag, `{lead}{key}suffix` spelled
/// `lead{key}suffix` when the key can be the tag itself, and `lead{tag}suffix:key` (a tag
/// chosen for that slot) in the rare remaining case (a key with a stray brace).
pub fn companion_key(lead: &str, key: &str, suffix: &str) -> String {
  let b = key.as_bytes();
  if hash_part(b).len() != b.len() {
    return format!("{key}{suffix}");
  }
  if !key.contains('}') && !key.contains('{') && !key.is_empty() && !lead.contains('{') {
    return format!("{lead}{{{key}}}{suffix}");
  }
  let tag = &tags()[key_slot(b) as usize];
  let lead = if lead.contains('{') || lead.contains('}') {
    ""
  } else {
    lead
  };
  format!("{lead}{{{tag}}}{suffix}:{key}")
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn known_slots() {
    assert_eq!(key_slot(b"123456789"), 12739);
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
  }

  #[test]
  fn companions_share_the_slot() {
    for k in [
      "lock:a",
      "lock:{x}y",
      "lock:a}b",
      "lock:{}",
      "lock:{a",
      "lock:ü}{",
    ] {
      let c = companion_key("lock:", k, ":fence");
      assert_eq!(key_slot(c.as_bytes()), key_slot(k.as_bytes()), "{k} -> {c}");
    }
  }
}
