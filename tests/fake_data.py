"""Small generated datasets in the real formats, so loaders are tested without any download."""

import contextlib
import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np

MINI_MANUFACTURERS = {"Boeing": ["707-320", "737-200", "747-400"], "Airbus": ["A300B4", "A320"], "Cessna": ["Cessna 172"]}


def make_mini_fgvc(root, n_trainval=3, n_test=2, size=(40, 30)):
    """A miniature ``<root>/fgvc-aircraft-2013b/data`` tree: tiny JPEGs and annotation files in the real format."""
    from PIL import Image

    data = Path(root) / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    variants = [v for vs in MINI_MANUFACTURERS.values() for v in vs]
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    (data / "manufacturers.txt").write_text("\n".join(MINI_MANUFACTURERS) + "\n")
    rng = np.random.default_rng(0)
    image_id = 1000000
    for split, n in (("trainval", n_trainval), ("test", n_test)):
        variant_lines, manufacturer_lines = [], []
        for manufacturer, vs in MINI_MANUFACTURERS.items():
            for variant in vs:
                for _ in range(n):
                    image_id += 1
                    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(data / "images" / f"{image_id}.jpg")
                    variant_lines.append(f"{image_id} {variant}")
                    manufacturer_lines.append(f"{image_id} {manufacturer}")
        (data / f"images_variant_{split}.txt").write_text("\n".join(variant_lines) + "\n")
        (data / f"images_manufacturer_{split}.txt").write_text("\n".join(manufacturer_lines) + "\n")
    return Path(root)


@contextlib.contextmanager
def http_mirror(folder):
    """An HTTP server on localhost serving the files of ``folder``, standing in for a dataset's site; yields its base URL."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
