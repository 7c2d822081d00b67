"""Backfill through `ray job submit` from a local S3 into a Milvus server: full run, no-op re-run,
SIGKILL of the driver halfway and resume; prints the counts that show each video indexed once.

    .venv/bin/python benchmarks/backfill_resume.py [--n 200] [--write-batch 20] [--milvus server|lite]

Everything it needs runs on 127.0.0.1 and is started here: moto's S3 server (in this process),
Milvus 2.3 standalone (the ``milvus`` package) or a Lite file, and a Ray head (`ray start --head
--block`) with its dashboard. The jobs are real `ray job submit --working-dir .` submissions, so
they are listed in the dashboard (its /api/jobs/ is printed at the end). The Ray head is stopped
by its own process group rather than `ray stop`, which would stop every Ray on a shared machine;
on a machine of your own the two are the same.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from astradup.catalog import Catalog  # noqa: E402
from astradup.config import load_config  # noqa: E402
from astradup.io.ids import content_id  # noqa: E402
from jobs.backfill import SUMMARY_TAG  # noqa: E402
from tests.media import make_video  # noqa: E402

RAY = str(ROOT / ".venv" / "bin" / "ray")
SEEDED_SOURCES = ("mandelbrot", "life", "cellauto", "gradients", "boxes")  # content changes with the seed
BUCKET = "corpus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_corpus(out: Path, n: int) -> list[Path]:
    """n distinct tiny clips (3-4 s, 160x120); seeded noise audio makes every file's bytes unique."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(out / f"clip_{i:04d}.mp4", 3 + (i % 2), SEEDED_SOURCES[i % len(SEEDED_SOURCES)], i) for i in range(n)]
    with cf.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        paths = list(pool.map(lambda j: make_video(j[0], seconds=j[1], size=(160, 120), fps=10, source=j[2],
                                                   audio="noise", seed=j[3]), jobs))
    ids = {content_id(p) for p in paths}
    if len(ids) != n:
        raise RuntimeError(f"only {len(ids)} of {n} generated clips are distinct")
    return paths


class MilvusStandalone:
    """Milvus 2.3 standalone from the ``milvus`` package, waited on until /healthz answers."""

    def __init__(self, base: Path, timeout: float = 300.0) -> None:
        from milvus import MilvusServer

        self.server = MilvusServer(wait_for_started=False)
        self.server.set_base_dir(str(base))
        t0 = time.time()
        self.server.start()
        while not self._healthy():
            if self.server.server_proc.poll() is not None:
                raise RuntimeError(f"Milvus exited; see {base}/logs")
            if time.time() - t0 > timeout:
                raise RuntimeError(f"Milvus not healthy after {timeout:.0f} s; see {base}/logs")
            time.sleep(0.5)
        self.uri = f"http://127.0.0.1:{self.server.listen_port}"
        log(f"Milvus {self.uri} healthy after {time.time() - t0:.1f} s")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.server.webservice_port}/healthz", timeout=2) as r:
                return b"OK" in r.read()
        except OSError:
            return False

    def stop(self) -> None:
        self.server.stop()


class RayHead:
    """`ray start --head --block` in its own session, so stopping it ends exactly its processes."""

    def __init__(self, env: dict[str, str], temp_dir: Path) -> None:
        self.dashboard_port = free_port()
        self.env = env
        cmd = [RAY, "start", "--head", "--block", f"--port={free_port()}", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--temp-dir={temp_dir}"]
        self.log = open(temp_dir.parent / "ray_head.log", "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        t0 = time.time()
        while not self._jobs_api_up():
            if self.proc.poll() is not None or time.time() - t0 > 120:
                raise RuntimeError(f"Ray head did not come up; see {self.log.name}")
            time.sleep(1)
        log(f"Ray head up, dashboard {self.address} ({time.time() - t0:.1f} s)")

    def _jobs_api_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.address}/api/jobs/", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def jobs(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.address}/api/jobs/", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers (agents) of the same group
        except ProcessLookupError:
            pass
        self.log.close()


def job_argv(shards: str, milvus_uri: str, prefix: str, endpoint: str, write_batch: int) -> list[str]:
    return ["python", "-m", "jobs.backfill", "--source", f"s3://{BUCKET}/videos", "--shards", shards,
            "--milvus-uri", milvus_uri, "--collection-prefix", prefix, "--s3-endpoint", endpoint,
            "--write-batch", str(write_batch)]


def submit(head: RayHead, sid: str, argv: list[str], wait: bool = True) -> dict | None:
    """`ray job submit`; with wait, the job's BACKFILL_SUMMARY (the run's figures)."""
    cmd = [RAY, "job", "submit", "--address", head.address, "--working-dir", str(ROOT), "--submission-id", sid,
           *([] if wait else ["--no-wait"]), "--", *argv]
    t0 = time.time()
    out = subprocess.run(cmd, env=head.env, capture_output=True, text=True, cwd=ROOT)
    if not wait:
        if out.returncode != 0:
            raise RuntimeError(f"submit failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return None
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(SUMMARY_TAG)]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"job {sid} failed ({out.returncode}):\n{out.stdout[-5000:]}\n{out.stderr[-3000:]}")
    summary = json.loads(lines[-1][len(SUMMARY_TAG):])
    summary["submit_wall_s"] = time.time() - t0
    for ln in out.stdout.splitlines():
        if ln.startswith(("listed ", "  FAILED")):
            log(f"{sid}: {ln.strip()}")
    return summary


def kill_halfway(head: RayHead, sid: str, cfg, n: int) -> dict:
    """Wait until half the corpus has status rows, then SIGKILL the job's driver process."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(head.address)
    cat = Catalog(cfg)
    t0 = time.time()
    while True:
        info = client.get_job_info(sid)
        if info.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            raise RuntimeError(f"job {sid} ended ({info.status}) before it could be killed")
        done = sum(r["status"] == "ok" for r in cat.shards.latest_status().values())
        if done >= n // 2 and info.driver_info is not None:
            pid = int(info.driver_info.pid)
            os.kill(pid, signal.SIGKILL)
            log(f"{sid}: SIGKILL driver pid {pid} with {done}/{n} videos recorded ({time.time() - t0:.1f} s in)")
            break
        if time.time() - t0 > 900:
            raise RuntimeError("the job made no progress in 15 min")
        time.sleep(0.2)
    while client.get_job_status(sid) not in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.SUCCEEDED):
        time.sleep(0.5)
    status = cat.shards.latest_status()
    with cat.vectors as vs:  # closed at once: a Lite file must be free for the resumed job
        in_milvus = len(vs.video_ids())
    return {"recorded_at_kill": done, "recorded_after_kill": sum(r["status"] == "ok" for r in status.values()),
            "milvus_videos_after_kill": in_milvus, "job_status": str(client.get_job_status(sid))}


def exactly_once(cfg, n: int) -> dict:
    """Every video: one ok status, vectors in Milvus, each frame once, totals equal to the shards."""
    cat = Catalog(cfg)
    status = cat.shards.latest_status()
    ok = {v for v, r in status.items() if r["status"] == "ok"}
    feats = cat.shards.load_features(ok)
    in_milvus = cat.vectors.video_ids()
    dup_frames = 0
    for vid in ok:
        t, _ = cat.vectors.get_frames(vid)
        dup_frames += len(t) - len({float(x) for x in t})
    counts = cat.vectors.count()
    rows = sum(len(f.timestamps) for f in feats.values())
    res = {"videos_ok": len(ok), "milvus_videos": len(in_milvus), "milvus_frames": counts["frames"],
           "shard_frames": rows, "duplicate_frames": dup_frames,
           "status_rows_ok": len(ok), "exactly_once": (len(ok) == n and in_milvus == ok and dup_frames == 0
                                                       and counts["frames"] == rows)}
    cat.vectors.close()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--write-batch", type=int, default=20)
    ap.add_argument("--milvus", choices=("server", "lite"), default="server")
    ap.add_argument("--workdir", default="/tmp/adbench")
    ap.add_argument("--json", default="", help="write the results here too")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops what was started
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    (work / "ray").mkdir(parents=True)

    t0 = time.time()
    clips = make_corpus(work / "clips", args.n)
    media_s = sum(3 + (i % 2) for i in range(args.n))
    log(f"{len(clips)} clips ({media_s / 60:.1f} min of media) generated in {time.time() - t0:.1f} s")

    # Token auth on (the head, the job clients and the drivers share ~/.ray/auth_token, made 0600 when
    # missing); the head on 127.0.0.1 only (Ray's single-machine switch), the clients told the same.
    from astradup.raystart import ensure_token, refresh_auth_state

    ensure_token()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    os.environ.update({k: env[k] for k in ("RAY_AUTH_MODE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION")})
    refresh_auth_state()  # this process's job client sends the token too
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    logging.getLogger("pymilvus").setLevel(logging.ERROR)  # 2.3 has no mvccTs for iterators: harmless

    s3_port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    s3.start()
    endpoint = f"http://127.0.0.1:{s3_port}"
    milvus = head = None
    results: dict = {"n": args.n, "media_seconds": media_s, "write_batch": args.write_batch, "milvus": args.milvus}
    try:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
        fs.mkdir(BUCKET)
        fs.put([str(p) for p in clips], f"{BUCKET}/videos/")
        log(f"uploaded to s3://{BUCKET}/videos on {endpoint}")
        if args.milvus == "server":
            milvus = MilvusStandalone(work / "milvus")
            milvus_uri = milvus.uri
        else:
            milvus_uri = str(work / "milvus.db")
        head = RayHead(env, work / "ray")

        def cfg_for(shards: str, prefix: str):
            return load_config(overrides={"shards_dir": shards, "milvus_uri": milvus_uri,
                                          "collection_prefix": prefix, "s3_endpoint": endpoint})

        # 1 + 2: full backfill, then the same job again.
        shards, prefix = f"s3://{BUCKET}/features", "bench"
        argv = job_argv(shards, milvus_uri, prefix, endpoint, args.write_batch)
        results["full"] = submit(head, "backfill-full", argv)
        results["rerun"] = submit(head, "backfill-rerun", argv)
        results["full_check"] = exactly_once(cfg_for(shards, prefix), args.n)

        # 3 + 4: a fresh index, its driver SIGKILLed halfway, then the job submitted again.
        shards, prefix = f"s3://{BUCKET}/features-resume", "resume"
        argv = job_argv(shards, milvus_uri, prefix, endpoint, args.write_batch)
        if args.milvus == "lite":  # a Lite file has one owner: the killed job's must be gone first
            argv[argv.index("--milvus-uri") + 1] = milvus_uri = str(work / "resume.db")
        submit(head, "backfill-killed", argv, wait=False)
        results["killed"] = kill_halfway(head, "backfill-killed", cfg_for(shards, prefix), args.n)
        results["resumed"] = submit(head, "backfill-resumed", argv)
        results["resume_check"] = exactly_once(cfg_for(shards, prefix), args.n)
        results["dashboard_jobs"] = [{"submission_id": j["submission_id"], "status": j["status"]}
                                     for j in head.jobs() if j.get("submission_id")]
    finally:
        if head:
            head.stop()
        if milvus:
            milvus.stop()
        s3.stop()

    f, r = results["full"], results["rerun"]
    print("\n== backfill through ray job submit ==")
    print(f"corpus: {args.n} clips, {media_s / 3600:.3f} h, s3 -> shards on s3 + Milvus {args.milvus}; "
          f"write batch {args.write_batch}; Ray cluster {f['cpus']:g} CPU, {f['gpus']:g} GPU")
    print(f"full run:   indexed {f['indexed']}, failed {len(f['failed'])}, job {f['wall_seconds']:.1f} s "
          f"(submit to end {f['submit_wall_s']:.1f} s): {f['x_realtime']:.2f}x realtime, "
          f"{f['x_realtime_per_cpu']:.2f}x per CPU core; driver peak RSS {f['driver_peak_rss_mb']:.0f} MB")
    print(f"re-run:     indexed {r['indexed']}, already indexed {r['skipped']} "
          f"({r['skipped_unread']} skipped from the listing alone) in {r['wall_seconds']:.1f} s; "
          f"vectors {r['vectors']} (full run: {f['vectors']})")
    k, s = results["killed"], results["resumed"]
    print(f"killed:     driver SIGKILLed at {k['recorded_at_kill']}/{args.n} recorded "
          f"({k['recorded_after_kill']} after it died, {k['milvus_videos_after_kill']} videos had vectors); "
          f"job {k['job_status']}")
    print(f"resumed:    indexed {s['indexed']}, already indexed {s['skipped']}, failed {len(s['failed'])}")
    for name in ("full_check", "resume_check"):
        c = results[name]
        print(f"{name:11} {c['videos_ok']} ok videos, {c['milvus_videos']} in Milvus, frames {c['milvus_frames']} "
              f"in Milvus / {c['shard_frames']} in shards, duplicate frames {c['duplicate_frames']}: "
              f"{'EXACTLY ONCE' if c['exactly_once'] else 'NOT EXACTLY ONCE'}")
    print("dashboard /api/jobs/: " + ", ".join(f"{j['submission_id']}={j['status']}" for j in results["dashboard_jobs"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, sort_keys=True, default=str))
    ok = (results["full_check"]["exactly_once"] and results["resume_check"]["exactly_once"]
          and r["indexed"] == 0 and s["indexed"] == args.n - k["recorded_after_kill"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
