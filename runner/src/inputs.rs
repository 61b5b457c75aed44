//! Puts a warm runner's delivered files and stdin in place before the
//! program starts. Nothing of the program has run yet, but the image's
//! workdir may hold symlinks, so files are only ever written through real
//! directories below the workdir.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::protocol::DeliveredFile;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("file path {path:?} {why}")]
    BadPath { path: String, why: &'static str },
    #[error("could not write {path:?}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("could not stage stdin: {0}")]
    Stdin(#[source] io::Error),
}

/// The segments of a delivered file's path, or why it may not be written:
/// relative, `/`-separated, no empty, `.` or `..` segment (as the
/// Execution's schema asks), so it cannot leave the workdir by its name.
pub fn segments(path: &str) -> Result<Vec<&str>, InputError> {
    let bad = |why| Err(InputError::BadPath { path: path.to_owned(), why });
    if path.is_empty() {
        return bad("is empty");
    }
    if path.starts_with('/') {
        return bad("is absolute");
    }
    let segments: Vec<&str> = path.split('/').collect();
    for segment in &segments {
        match *segment {
            "" => return bad("has an empty segment"),
            "." | ".." => return bad("has a . or .. segment"),
            s if s.contains('\0') => return bad("has a NUL byte"),
            _ => {}
        }
    }
    Ok(segments)
}

/// Writes every file below `workdir`, creating the directories on the way.
pub fn write_files(workdir: &Path, files: &[DeliveredFile]) -> Result<(), InputError> {
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |source| InputError::Write { path, source }
    };
    fs::create_dir_all(workdir).map_err(failed(workdir))?;
    for file in files {
        let segments = segments(&file.path)?;
        let Some((name, dirs)) = segments.split_last() else {
            continue;
        };
        let mut target = workdir.to_path_buf();
        for dir in dirs {
            target.push(dir);
            match fs::symlink_metadata(&target) {
                Ok(meta) if meta.is_dir() => {}
                // A symlink (or a file) on the way could lead out of the workdir.
                Ok(_) => {
                    return Err(InputError::BadPath { path: file.path.clone(), why: "goes through a non-directory" })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&target).map_err(failed(&target))?,
                Err(e) => return Err(failed(&target)(e)),
            }
        }
        target.push(name);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&target)
            .and_then(|mut f| f.write_all(file.content.as_bytes()))
            .map_err(failed(&target))?;
    }
    Ok(())
}

/// The program's stdin: the delivered text in a file opened read-only and
/// unlinked before the program exists, so no path leads to it; `None` when
/// there is no text (the program gets `/dev/null`).
pub fn stdin_file(text: Option<&str>) -> Result<Option<File>, InputError> {
    let Some(text) = text else {
        return Ok(None);
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let path: PathBuf = std::env::temp_dir().join(format!("sandrun-stdin-{}-{nanos}", std::process::id()));
    // create_new: never through a file or symlink that was already there.
    let mut writer =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(InputError::Stdin)?;
    let reader = writer.write_all(text.as_bytes()).and_then(|()| File::open(&path));
    let removed = fs::remove_file(&path);
    let reader = reader.map_err(InputError::Stdin)?;
    removed.map_err(InputError::Stdin)?;
    Ok(Some(reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sandrun-inputs-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn file(path: &str, content: &str) -> DeliveredFile {
        DeliveredFile { path: path.into(), content: content.into() }
    }

    #[test]
    fn table_of_file_paths() {
        let cases: [(&str, Result<&[&str], &str>); 12] = [
            ("main.py", Ok(&["main.py"])),
            ("pkg/mod/a.txt", Ok(&["pkg", "mod", "a.txt"])),
            (".hidden", Ok(&[".hidden"])),
            ("a..b", Ok(&["a..b"])),
            ("", Err("is empty")),
            ("/etc/passwd", Err("is absolute")),
            ("../x", Err("has a . or .. segment")),
            ("a/../../x", Err("has a . or .. segment")),
            ("./main.py", Err("has a . or .. segment")),
            ("pkg/", Err("has an empty segment")),
            ("a//b", Err("has an empty segment")),
            ("a\0b", Err("has a NUL byte")),
        ];
        for (path, want) in cases {
            let got = segments(path).map_err(|e| match e {
                InputError::BadPath { why, .. } => why,
                other => panic!("for {path:?}: {other}"),
            });
            assert_eq!(got, want.map(<[&str]>::to_vec), "for {path:?}");
        }
    }

    #[test]
    fn writes_nested_files_and_overwrites() {
        let work = scratch("nested").join("work");
        write_files(&work, &[file("a/b/c.txt", "old"), file("a/b/c.txt", "deep"), file("top", "")]).unwrap();
        assert_eq!(fs::read_to_string(work.join("a/b/c.txt")).unwrap(), "deep");
        assert_eq!(fs::read_to_string(work.join("top")).unwrap(), "");
        fs::remove_dir_all(work.parent().unwrap()).unwrap();
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let dir = scratch("symlink");
        let (work, outside) = (dir.join("work"), dir.join("outside"));
        fs::create_dir_all(&work).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, work.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("target"), work.join("file")).unwrap();
        let through_dir = write_files(&work, &[file("link/x", "escaped")]);
        assert!(matches!(through_dir, Err(InputError::BadPath { .. })), "{through_dir:?}");
        let onto_link = write_files(&work, &[file("file", "escaped")]);
        assert!(matches!(onto_link, Err(InputError::Write { .. })), "{onto_link:?}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "something was written outside the workdir");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stdin_is_an_unlinked_read_only_file() {
        assert!(stdin_file(None).unwrap().is_none());
        let mut f = stdin_file(Some("from stdin\n")).unwrap().unwrap();
        assert!(f.write_all(b"x").is_err(), "stdin is writable");
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "from stdin\n");
        use std::os::fd::AsRawFd;
        let link = fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
        assert!(link.to_string_lossy().ends_with("(deleted)"), "{link:?}");
    }
}
