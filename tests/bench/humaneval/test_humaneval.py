"""bench humaneval: prepare, invite, the web app's API and its guarantees, report."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.humaneval import analysis
from bench.humaneval.server import create_app
from bench.humaneval.study import QUESTIONS, invite, load_study, prepare_study
from bench.video_io import write_mp4

REPO = Path(__file__).resolve().parents[3]
PROMPTS = ["a red circle moving left", "a blue square", "a green star spinning"]
ANSWER_ALL = lambda choice: {q["id"]: choice for q in QUESTIONS}  # noqa: E731


def make_model(root: Path, name: str, level: int, prompts=PROMPTS, videos=2) -> Path:
    folder = root / name / "videos" / "tiny_4step"
    folder.mkdir(parents=True)
    records = []
    for p in prompts:
        for i in range(videos):
            frames = np.full((8, 32, 32, 3), level, dtype=np.uint8)
            frames[:, : 4 + 4 * i] = 255 - level
            write_mp4(folder / f"{p}-{i}.mp4", frames, fps=8)
            records.append(json.dumps({"file": f"{p}-{i}.mp4", "prompt": p, "index": i}))
    (folder / "manifest.jsonl").write_text("\n".join(records) + "\n")
    return folder


@pytest.fixture
def study(tmp_path):
    a = make_model(tmp_path, "vcm", 40)
    b = make_model(tmp_path, "turbo", 200)
    return prepare_study([str(a), f"t2v-turbo={b}"], tmp_path / "study", seed=3)


def test_prepare_pairs_same_prompt_and_index_randomises_sides_and_hides_models(tmp_path, study):
    assert len(study.pairs) == 6 and list(study.config["models"]) == ["vcm/tiny_4step", "t2v-turbo"]
    sides = [p["left"]["model"] for p in study.pairs]
    assert set(sides) == {"vcm/tiny_4step", "t2v-turbo"}  # both models appear on the left
    for p in study.pairs:
        assert p["left"]["model"] != p["right"]["model"]
        for side in ("left", "right"):
            video = study.root / p[side]["video"]
            assert video.is_file() and "turbo" not in video.name and "vcm" not in video.name
    # The same left/right and ids from the same seed.
    again = prepare_study([str(tmp_path / "vcm/videos/tiny_4step"), f"t2v-turbo={tmp_path / 'turbo/videos/tiny_4step'}"],
                          tmp_path / "again", seed=3)
    assert [p["id"] for p in again.pairs] == [p["id"] for p in study.pairs]
    assert [p["left"]["model"] for p in again.pairs] == sides


def test_prepare_bad_input_exits_2_and_writes_nothing(tmp_path):
    from bench.cli import _register_verbs, app

    _register_verbs()
    a = make_model(tmp_path, "a", 10)
    b = make_model(tmp_path, "b", 90, prompts=["something else"])
    runner = CliRunner()
    cases = [
        (["--a", str(a), "--b", str(b)], "no video of the same prompt and index"),
        (["--a", str(a), "--b", str(tmp_path / "missing")], "not a folder"),
        (["--a", str(a), "--b", str(a)], "same name"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["humaneval", "prepare", *args, "--out", str(tmp_path / "s")])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output and not (tmp_path / "s").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = runner.invoke(app, ["humaneval", "prepare", "--a", str(a), "--b", f"b2={a}", "--out", str(tmp_path / "full")])
    assert result.exit_code == 2 and "not an empty folder" in result.output


def test_api_serves_each_pair_once_in_the_raters_own_order_and_guards_the_votes(study):
    client = create_app(study.root).test_client()
    t1, t2 = invite(study, 2)
    assert client.get("/r/nope").status_code == 403
    page = client.get(f"/r/{t1}")
    assert page.status_code == 200 and b"Which video" in page.data
    seen, orders = {}, {}
    for token in (t1, t2):
        orders[token] = []
        while True:
            body = client.get(f"/api/{token}/next").get_json()
            if body["pair"] is None:
                assert body["done"] == body["total"] == 6
                break
            pair = body["pair"]
            text = json.dumps(body)
            assert "vcm" not in text and "turbo" not in text and "videos/" not in text  # identities never reach the page
            video = client.get(pair["left"])
            assert video.status_code == 200 and video.data[4:8] == b"ftyp"
            orders[token].append(pair["id"])
            r = client.post(f"/api/{token}/vote", json={"pair": pair["id"], "answers": ANSWER_ALL("left")})
            assert r.status_code == 200
            # A replay is refused and changes nothing.
            again = client.post(f"/api/{token}/vote", json={"pair": pair["id"], "answers": ANSWER_ALL("right")})
            assert again.status_code == 409
        seen[token] = set(orders[token])
    assert seen[t1] == seen[t2] == {p["id"] for p in study.pairs}
    assert orders[t1] != orders[t2]  # each rater's own random order
    votes = sqlite3.connect(study.db_path).execute("SELECT choice, COUNT(*) FROM votes GROUP BY choice").fetchall()
    assert votes == [("left", 36)]


@pytest.mark.parametrize("body,status", [
    ({"pair": "nope", "answers": ANSWER_ALL("tie")}, 404),
    ({"pair": None, "answers": ANSWER_ALL("tie")}, 400),
    ({"answers": ANSWER_ALL("tie")}, 400),
    ("not json", 400),
    ({"pair": "PAIR", "answers": {"visual_quality": "left"}}, 400),
    ({"pair": "PAIR", "answers": ANSWER_ALL("middle")}, 400),
    ({"pair": "PAIR", "answers": ANSWER_ALL("tie") | {"extra": "left"}}, 400),
    ({"pair": "PAIR", "answers": ANSWER_ALL("tie"), "pad": "x" * 10000}, 413),
])
def test_bad_votes_are_4xx_and_change_nothing(study, body, status):
    client = create_app(study.root).test_client()
    (token,) = invite(study, 1)
    pair = study.pairs[0]["id"]
    if isinstance(body, dict) and body.get("pair") == "PAIR":
        body = {**body, "pair": pair}
    kwargs = {"json": body} if isinstance(body, dict) else {"data": body, "content_type": "application/json"}
    r = client.post(f"/api/{token}/vote", **kwargs)
    assert r.status_code == status and "error" in r.get_json()
    assert sqlite3.connect(study.db_path).execute("SELECT COUNT(*) FROM votes").fetchone() == (0,)


def test_a_rater_can_only_vote_as_themselves_and_videos_only_from_the_study(study):
    client = create_app(study.root).test_client()
    pair = study.pairs[0]["id"]
    r = client.post("/api/someone-else/vote", json={"pair": pair, "answers": ANSWER_ALL("left")})
    assert r.status_code == 403
    for url in (f"/v/{pair}/../../study.json", "/v/../votes.sqlite/left", f"/v/{pair}/middle", "/v/%2e%2e/left",
                "/v/..%2Fstudy.json/left"):
        assert client.get(url).status_code == 404, url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(study_dir: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "bench", "humaneval", "serve", str(study_dir), "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/r/x", timeout=1)
        except urllib.error.HTTPError:
            return proc  # 403 for an unknown token: it is up
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(proc.stderr.read().decode())


def _post(url: str, body: dict) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=30).status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.integration
def test_twenty_raters_at_once_over_http_then_kill_9_and_restart_keeps_every_acknowledged_vote(study):
    port = _free_port()
    tokens = invite(study, 20)
    proc = _start_server(study.root, port)
    acknowledged: list[tuple[str, str]] = []
    lock = threading.Lock()
    try:
        def rater(token):
            for pair in study.pairs[:3]:
                status = _post(f"http://127.0.0.1:{port}/api/{token}/vote", {"pair": pair["id"], "answers": ANSWER_ALL("tie")})
                if status == 200:
                    with lock:
                        acknowledged.append((token, pair["id"]))
                # The same vote twice at once from the same rater: only one may count.
                _post(f"http://127.0.0.1:{port}/api/{token}/vote", {"pair": pair["id"], "answers": ANSWER_ALL("left")})

        threads = [threading.Thread(target=rater, args=(t,)) for t in tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(acknowledged) == 60
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        db = sqlite3.connect(study.db_path)
        assert db.execute("SELECT COUNT(*) FROM votes").fetchone() == (180,)  # 60 pairs x 3 questions, none doubled
        assert db.execute("SELECT COUNT(*) FROM votes WHERE choice != 'tie'").fetchone() == (0,)
        db.close()
        proc = _start_server(study.root, port)  # restarted: resumes where each rater was
        body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{tokens[0]}/next", timeout=30).read())
        assert body["done"] == 3 and body["pair"]["id"] not in {p["id"] for p in study.pairs[:3]}
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_report_counts_wins_with_wilson_intervals_bradley_terry_and_agreement(tmp_path):
    from bench.cli import _register_verbs, app

    _register_verbs()
    folders = [make_model(tmp_path, n, lvl) for n, lvl in (("a", 10), ("b", 120), ("c", 240))]
    study = prepare_study([f"A={folders[0]}", f"B={folders[1]}", f"C={folders[2]}"], tmp_path / "study", seed=1)
    client = create_app(study.root).test_client()
    tokens = invite(study, 3)
    strength = {"A": 0, "B": 1, "C": 2}  # every rater prefers C over B over A, on every question
    for token in tokens:
        for pair in study.pairs:
            better = "left" if strength[pair["left"]["model"]] > strength[pair["right"]["model"]] else "right"
            assert client.post(f"/api/{token}/vote", json={"pair": pair["id"], "answers": ANSWER_ALL(better)}).status_code == 200
    result = analysis.report(load_study(study.root))
    row = next(r for r in result["wins"] if r["question"] == "general_preference" and (r["a"], r["b"]) == ("A", "C"))
    assert (row["win"], row["tie"], row["loss"], row["votes"]) == (0, 0, 18, 18)
    assert row["loss_share"] == 1.0 and row["loss_ci"] == pytest.approx(analysis.wilson(18, 18))
    lo, hi = analysis.wilson(18, 18)
    assert hi == 1.0 and 0.8 < lo < 0.85  # Wilson: 18/18 -> [0.824, 1]
    bt = result["bradley_terry"]["visual_quality"]
    assert bt["C"] > bt["B"] > bt["A"] and sum(bt.values()) == pytest.approx(1.0)
    assert result["agreement"]["text_alignment"] == pytest.approx(1.0)

    out = tmp_path / "rep" / "human"
    r = CliRunner().invoke(app, ["humaneval", "report", str(study.root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Krippendorff" in (tmp_path / "rep" / "human.md").read_text()
    assert (tmp_path / "rep" / "human.png").stat().st_size > 1000
    assert json.loads((tmp_path / "rep" / "human.json").read_text())["votes"] == 3 * 18 * 3


def test_bradley_terry_matches_a_hand_solved_case():
    # Two models, A beats B 3 times out of 4: the maximum-likelihood strengths are 3:1.
    bt = analysis.bradley_terry(["A", "B"], [("A", "B", 1.0)] * 3 + [("A", "B", 0.0)])
    assert bt["A"] / bt["B"] == pytest.approx(3.0, rel=1e-2)


def test_invite_prints_links_and_report_without_votes_exits_2(study):
    from bench.cli import _register_verbs, app

    _register_verbs()
    r = CliRunner().invoke(app, ["humaneval", "invite", str(study.root), "--n", "3", "--base-url", "http://host:1/"])
    links = r.output.split()
    assert r.exit_code == 0 and len(links) == 3 and all(l.startswith("http://host:1/r/") for l in links)
    r = CliRunner().invoke(app, ["humaneval", "report", str(study.root), "--out", str(study.root.parent / "x")])
    assert r.exit_code == 2 and "no votes" in r.output
    r = CliRunner().invoke(app, ["humaneval", "serve", str(study.root.parent / "nothing")])
    assert r.exit_code == 2 and "not a study folder" in r.output
