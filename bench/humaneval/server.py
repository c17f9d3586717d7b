"""The raters' web app (Flask): one page, a small JSON API, and the study's videos.

Routes (TOKEN is the rater's invite token, the only identity a rater has):
  GET  /r/TOKEN                 the page: instructions, then one pair at a time
  GET  /api/TOKEN/next          the rater's next unanswered pair (their own random order)
  POST /api/TOKEN/vote          {"pair": ID, "answers": {question: left|tie|right}} for every question
  GET  /v/PAIR/left|right       a pair's video, looked up in pairs.json, never a path from the request

What reaches the page: the prompt, the pair id, the two video URLs, the questions. Model names
and video file names never do. An unknown token is 403, an unknown pair 404, a malformed body
400, a pair already answered 409 (nothing changes); every vote is one SQLite transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.humaneval.study import (
    CHOICES,
    VoteConflict,
    answered_pairs,
    connect,
    load_study,
    rater_of,
    rater_order,
    record_vote,
)

PAGE = Path(__file__).with_name("page.html")
MAX_BODY = 4096  # a vote is a few hundred bytes


def create_app(study_dir: Path) -> Any:
    from flask import Flask, abort, jsonify, request, send_file

    study = load_study(study_dir)
    app = Flask("bench.humaneval")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    questions = [q["id"] for q in study.questions]
    page = PAGE.read_text(encoding="utf-8")

    def rater_or_403(conn, token: str) -> int:
        rater = rater_of(conn, token)
        if rater is None:
            abort(403, description="unknown invite token")
        return rater

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(409)
    @app.errorhandler(413)
    def _error(err):  # JSON errors, no HTML stack pages
        return jsonify({"error": getattr(err, "description", str(err))}), err.code

    @app.after_request
    def _headers(resp):
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store" if not request.path.startswith("/v/") else "private, max-age=3600"
        return resp

    @app.get("/r/<token>")
    def rater_page(token: str):
        with connect(study.db_path) as conn:
            rater_or_403(conn, token)
        return page, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/api/<token>/next")
    def next_pair(token: str):
        with connect(study.db_path) as conn:
            rater = rater_or_403(conn, token)
            done = answered_pairs(conn, rater, len(questions))
        order = rater_order(study, token)
        remaining = [p for p in order if p not in done]
        body = {"done": len(order) - len(remaining), "total": len(order), "questions": study.questions,
                "choices": list(CHOICES), "pair": None}
        if remaining:
            pair = study.pair(remaining[0])
            body["pair"] = {"id": pair["id"], "prompt": pair["prompt"],
                            "left": f"/v/{pair['id']}/left", "right": f"/v/{pair['id']}/right"}
        return jsonify(body)

    @app.post("/api/<token>/vote")
    def vote(token: str):
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("pair"), str) or not isinstance(data.get("answers"), dict):
            abort(400, description='expected {"pair": ID, "answers": {question: choice}}')
        answers = data["answers"]
        if set(answers) != set(questions) or not all(isinstance(c, str) and c in CHOICES for c in answers.values()):
            abort(400, description=f"answers must give one of {', '.join(CHOICES)} for each of {', '.join(questions)}")
        if study.pair(data["pair"]) is None:
            abort(404, description="unknown pair")
        with connect(study.db_path) as conn:
            rater = rater_or_403(conn, token)
            try:
                record_vote(conn, rater, data["pair"], answers)
            except VoteConflict:
                abort(409, description="this pair is already answered")
        return jsonify({"ok": True})

    @app.get("/v/<pair_id>/<side>")
    def video(pair_id: str, side: str):
        pair = study.pair(pair_id)
        if pair is None or side not in ("left", "right"):
            abort(404, description="no such video")
        # The file comes from pairs.json, inside the study's videos/ folder.
        path = (study.root / pair[side]["video"]).resolve()
        if not path.is_relative_to((study.root / "videos").resolve()) or not path.is_file():
            abort(404, description="no such video")
        return send_file(path, mimetype="video/mp4", conditional=True, etag=False, download_name="video.mp4")

    return app


def serve(study_dir: Path, host: str, port: int, on_ready=None) -> None:
    """Run the app with werkzeug's threaded server until interrupted."""
    from werkzeug.serving import make_server

    server = make_server(host, port, create_app(study_dir), threaded=True)
    if on_ready is not None:
        on_ready(server.server_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
