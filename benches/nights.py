"""Night after night (issue 20, the store's merging of small segments):
the bench's 10^7 data split into a history and one file per day for the
last N days, then one `tiering run` per night, each adding that day's file
and scoring as of that day, as a nightly job would. Prints each night's
wall time and the store's segment count, so a night's cost can be seen
not to grow with the count of nights.

    python3 benches/nights.py --tiering target/release/tiering [--data benches/data/10000000]
        [--nights 40] [--compact-at 16]

The data set must exist (benches/run.sh generates it). Works under
benches/data/<name>/nights-<compact_at>/ and removes each night's snapshot.
"""
import argparse, datetime, json, os, shutil, subprocess, time

HERE = os.path.dirname(os.path.abspath(__file__))
LAST = datetime.date(2010, 12, 31)


def split(src, drops, first):
    """Rows dated before `first` to t_0000_history.csv, each later day's to
    its own file under drops/days/ (linked into drops/ night by night)."""
    days = os.path.join(drops, "days")
    os.makedirs(days)
    files = {}
    with open(src) as f:
        header = f.readline()
        history = open(os.path.join(drops, "t_0000_history.csv"), "w")
        history.write(header)
        for line in f:
            day = line.split(",", 3)[2][:10]
            if day < first:
                history.write(line)
                continue
            out = files.get(day)
            if out is None:
                out = files[day] = open(os.path.join(days, f"t_{day}.csv"), "w")
                out.write(header)
            out.write(line)
        history.close()
    for out in files.values():
        out.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiering", required=True)
    ap.add_argument("--data", default=os.path.join(HERE, "data", "10000000"))
    ap.add_argument("--nights", type=int, default=40)
    ap.add_argument("--compact-at", type=int, default=16)
    a = ap.parse_args()
    work = os.path.join(a.data, f"nights-{a.compact_at}")
    shutil.rmtree(work, ignore_errors=True)
    drops, out = os.path.join(work, "drops"), os.path.join(work, "out")
    first = LAST - datetime.timedelta(days=a.nights - 1)
    split(os.path.join(a.data, "transactions.csv"), drops, first.isoformat())
    config = os.path.join(work, "pipeline.toml")
    with open(config, "w") as f:
        f.write(f'[inputs.transactions]\npath = "{drops}/t_*.csv"\n'
                f'[inputs.customers]\npath = "{os.path.join(a.data, "customers.csv")}"\n'
                f"[store]\ncompact_at = {a.compact_at}\n")

    def run(day):
        cmd = [a.tiering, "-q", "run", "--config", config, "--as-of", day.isoformat(),
               "--out", out, "--overwrite"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        secs = time.perf_counter() - t
        snap = os.path.join(out, f"snapshot={day.isoformat()}")
        with open(os.path.join(snap, "manifest.json")) as f:
            store = json.load(f)["store"]
        shutil.rmtree(snap)
        return secs, store

    run(first - datetime.timedelta(days=1))  # the history alone
    print("| night | seconds | segments | merged |\n|---|---|---|---|")
    for i in range(a.nights):
        day = first + datetime.timedelta(days=i)
        name = f"t_{day.isoformat()}.csv"
        src = os.path.join(drops, "days", name)
        if os.path.exists(src):
            os.symlink(src, os.path.join(drops, name))
        secs, store = run(day)
        print(f"| {day} | {secs:.2f} | {store['segments']} | {store['segments_merged']} |", flush=True)


if __name__ == "__main__":
    main()
