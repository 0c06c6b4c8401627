use super::*;
use ring::aead::{AES_256_GCM, UnboundKey};

const PAN: &str = "4761739001010119";

struct Always;
impl Settled for Always {
    fn barrier(&self) -> Result<(), String> {
        Ok(())
    }
}

fn key(b: u8) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[b; 32]).unwrap())
}

fn setup(tag: &str, rotate: Duration) -> (PathBuf, InDoubt) {
    let dir = std::env::temp_dir().join(format!("isoswitch-indoubt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lock = Arc::new(lock_dir(&dir).unwrap());
    let cfg =
        InDoubt { dir: dir.clone(), key: key(7), rotate, fsync: false, settled: Arc::new(Always), lock };
    (dir, cfg)
}

fn request(stan: &str) -> Vec<u8> {
    let spec = crate::iso::spec::shipped("iso87ascii").unwrap();
    let mut m = crate::iso::Message::new(spec, "0200").unwrap();
    m.set(2, PAN).unwrap().set(3, "000000").unwrap().set(4, "000000010000").unwrap();
    m.set(11, stan).unwrap().set(35, &format!("{PAN}=28121011234567890")).unwrap();
    m.to_bytes().unwrap().to_vec()
}

#[test]
fn segments_round_trip_without_a_clear_pan_and_a_wrong_key_names_the_file() {
    let (dir, cfg) = setup("trip", Duration::from_secs(60));
    let log = IssuerLog::new("bank a/1".into(), &cfg).unwrap();
    let mut w = log.writer(2);
    w.add(b"000001", &request("900001"));
    w.add(b"000002", &request("900002"));
    w.flush();
    w.flush(); // nothing added: no record
    w.add(b"000003", &request("900003"));
    w.flush();
    let idir = issuer_dir(&dir, "bank a/1");
    assert!(idir.starts_with(&dir) && idir.file_name().unwrap().to_str().unwrap().starts_with('x'));
    let segs = segments(&idir).unwrap();
    assert_eq!(segs.len(), 1);
    let (link, path) = &segs[0];
    assert_eq!(*link, 2);
    let bytes = std::fs::read(path).unwrap();
    assert!(!bytes.windows(PAN.len()).any(|w| w == PAN.as_bytes()), "clear PAN in the segment");
    let got = read(&key(7), "bank a/1", path).unwrap();
    let stans: Vec<&str> = got.iter().map(|e| e.terminal_stan.as_str()).collect();
    assert_eq!(stans, ["000001", "000002", "000003"]);
    assert_eq!(got[1].body, request("900002"));

    let e = read(&key(8), "bank a/1", path).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("does not open"), "{e}");
    assert!(!e.contains(PAN));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rotation_deletes_only_resolved_segments() {
    let (dir, cfg) = setup("rotate", Duration::from_millis(10));
    let log = IssuerLog::new("bank".into(), &cfg).unwrap();
    let mut w = log.writer(0);
    w.add(b"000001", &request("900001"));
    w.flush();
    std::thread::sleep(Duration::from_millis(20));
    // The next write closes the first segment and opens a second.
    w.add(b"000002", &request("900002"));
    w.flush();
    let idir = issuer_dir(&dir, "bank");
    assert_eq!(segments(&idir).unwrap().len(), 2);
    assert_eq!(log.closed_len(), 1);
    let hold = Duration::from_secs(5);
    let t0 = Instant::now();
    // Not held long enough: nothing deleted, no barrier asked.
    assert_eq!(log.reap(t0, hold, || panic!("no barrier before the hold")), 0);
    // Held long enough but the barrier fails: kept.
    assert_eq!(log.reap(t0 + hold, hold, || Err("journal down".into())), 0);
    assert_eq!(segments(&idir).unwrap().len(), 2);
    // Held and barrier passed: the closed one goes, the open one stays.
    assert_eq!(log.reap(t0 + hold, hold, || Ok(())), 1);
    let left = segments(&idir).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(read(&key(7), "bank", &left[0].1).unwrap()[0].terminal_stan, "000002");
    assert_eq!(log.closed_len(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_switch_on_the_same_directory_is_refused_until_the_first_is_gone() {
    let dir = std::env::temp_dir().join(format!("isoswitch-indoubt-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = lock_dir(&dir).unwrap();
    // A second open of the lock file is another holder, as another process would be.
    let e = lock_dir(&dir).unwrap_err().to_string();
    assert!(e.contains(&dir.join(".lock").display().to_string()), "{e}");
    assert!(e.contains("in use by another running switch") && e.contains("indoubt_dir"), "{e}");
    drop(first);
    let again = lock_dir(&dir).unwrap();
    // The lock file is never taken for an issuer's directory or a segment.
    assert_ne!(issuer_dir(&dir, ".lock"), dir.join(".lock"));
    assert!(segments(&dir).unwrap().is_empty());
    drop(again);
    std::fs::remove_dir_all(&dir).unwrap();
}
