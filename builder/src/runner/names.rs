//! Container ids and automatic names.

use std::io::Read;

const ADJECTIVES: [&str; 32] = [
    "agile", "bold", "brave", "bright", "calm", "clever", "cosmic", "daring", "eager", "fancy",
    "gentle", "happy", "humble", "jolly", "keen", "lively", "lucid", "merry", "nimble", "noble",
    "patient", "quiet", "rapid", "serene", "sharp", "steady", "sunny", "swift", "tender", "upbeat",
    "vivid", "witty",
];

const SURNAMES: [&str; 32] = [
    "agnesi",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "dirac",
    "euler",
    "faraday",
    "fermi",
    "franklin",
    "gauss",
    "goodall",
    "hopper",
    "hubble",
    "kepler",
    "lamarr",
    "leavitt",
    "lovelace",
    "maxwell",
    "meitner",
    "mendel",
    "newton",
    "noether",
    "pascal",
    "planck",
    "ramanujan",
    "sagan",
    "tesla",
    "turing",
    "volta",
    "wiles",
    "yalow",
];

/// Returns `count` random bytes from `/dev/urandom`, or bytes mixed from
/// the clock and PID when it cannot be read.
pub(crate) fn random_bytes(count: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; count];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut bytes));
    if read.is_err() {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        for byte in &mut bytes {
            // xorshift64
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed as u8;
        }
    }
    bytes
}

/// Returns a new container id: 64 lowercase hex digits.
pub(crate) fn new_id() -> String {
    hex::encode(random_bytes(32))
}

/// Returns a random `adjective_surname` name not in `taken`; a number is
/// appended when the random picks keep colliding.
pub(crate) fn new_name(taken: &[String]) -> String {
    for attempt in 0..64usize {
        let bytes = random_bytes(2);
        let adjective = ADJECTIVES[usize::from(bytes[0]) % ADJECTIVES.len()];
        let surname = SURNAMES[usize::from(bytes[1]) % SURNAMES.len()];
        let name = if attempt < 16 {
            format!("{adjective}_{surname}")
        } else {
            format!("{adjective}_{surname}{attempt}")
        };
        if !taken.contains(&name) {
            return name;
        }
    }
    format!("container_{}", &new_id()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_64_hex() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(id, new_id());
    }

    #[test]
    fn name_has_two_words_and_avoids_taken() {
        let name = new_name(&[]);
        let (adjective, surname) = name.split_once('_').unwrap();
        assert!(ADJECTIVES.contains(&adjective), "{name}");
        assert!(SURNAMES.iter().any(|s| surname.starts_with(s)), "{name}");
        let all: Vec<String> = ADJECTIVES
            .iter()
            .flat_map(|a| SURNAMES.iter().map(move |s| format!("{a}_{s}")))
            .collect();
        let fresh = new_name(&all);
        assert!(!all.contains(&fresh), "{fresh}");
    }
}
