//! Reading files a configuration names (keys, certificates, secrets, the configuration
//! itself): bounded, into memory that is wiped when dropped. Every module that reads one uses
//! this, so none of them needs the configuration module for it.

use std::path::Path;

/// Reads a whole file of at most `max` bytes into a zeroizing buffer; a longer one (or
/// `/dev/zero` named by mistake) is an error, not an allocation without end.
pub fn read_at_most(path: &Path, max: usize) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(max.min(64 * 1024) + 1));
    file.take(max as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {max} bytes"),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_up_to_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![b'x'; 100]).unwrap();
        assert_eq!(read_at_most(&p, 100).unwrap().len(), 100);
        assert!(read_at_most(&p, 99).is_err());
        // A device that never ends is refused, not read until memory runs out.
        let e = read_at_most(Path::new("/dev/zero"), 4096).unwrap_err();
        assert!(e.to_string().contains("longer than 4096"), "{e}");
    }
}
