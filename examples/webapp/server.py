"""Serve the pictures in IMAGE_DIR by name: GET /images/<name>.

Bottle's static_file sets the content type from the file name and returns
404 for a missing picture and 403 for a name that leaves IMAGE_DIR.
"""

import os
import signal
import sys

from bottle import Bottle, abort, response, run, static_file

IMAGE_DIR = os.environ.get("IMAGE_DIR", "/images")

app = Bottle()


@app.get("/")
def index():
    """List the pictures that /images/<name> serves, one name per line."""
    response.content_type = "text/plain; charset=utf-8"
    names = sorted(
        name
        for name in os.listdir(IMAGE_DIR)
        if os.path.isfile(os.path.join(IMAGE_DIR, name))
    )
    return "".join(name + "\n" for name in names)


@app.get("/images/<name>")
def image(name):
    """Send one picture. The <name> wildcard stops at a slash, so a path
    with a folder in it never reaches this route."""
    if name.startswith("."):
        abort(404, "no such picture")
    return static_file(name, root=IMAGE_DIR)


if __name__ == "__main__":
    # As process 1 of a container, python would ignore SIGTERM, so
    # `podman stop` would wait for its timeout and then kill the server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    run(
        app,
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8000")),
    )
