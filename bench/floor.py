#!/usr/bin/env python3
"""Write the files of a build again, with nothing but file writes: the floor that
any tool writing the same files pays.

Reads LIST, one `SIZE<TAB>RELATIVE_PATH` line per file (as `find -printf
'%s\t%P\n'` prints them), and writes that many bytes to each path under OUT_DIR,
creating the parent directories. With --fsync, each file is also flushed to disk
before it is closed, as a tool that makes each file durable on its own does.
"""

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("list", help="file of SIZE<TAB>RELATIVE_PATH lines")
    parser.add_argument("out_dir", help="directory to write the files under")
    parser.add_argument("--fsync", action="store_true", help="fsync each file")
    args = parser.parse_args()

    with open(args.list, encoding="utf-8") as listing:
        entries = [line.rstrip("\n").split("\t", 1) for line in listing if line.strip()]

    created_dirs = set()
    for size, relative in entries:
        path = os.path.join(args.out_dir, relative)
        parent = os.path.dirname(path)
        if parent not in created_dirs:
            os.makedirs(parent, exist_ok=True)
            created_dirs.add(parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x" * int(size))
            if args.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)


if __name__ == "__main__":
    main()
