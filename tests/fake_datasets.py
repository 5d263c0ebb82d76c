"""Tiny fake iNaturalist 2021 and Insects Image Dataset trees, built on the fly for tests.

Images are small JPEG "photos" of different sizes: a textured background and an ellipse whose
colour and shape depend on the category, so that even a randomly initialised encoder separates
the classes somewhat and the pipeline's numbers are not pure noise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# category -> (phylum, class, order, family, genus, species) of one iNaturalist species
CATEGORY_SPECIES = {
    "Ant": ("Arthropoda", "Insecta", "Hymenoptera", "Formicidae", "Camponotus", "Camponotus pennsylvanicus"),
    "Bee": ("Arthropoda", "Insecta", "Hymenoptera", "Apidae", "Apis", "Apis mellifera"),
    "Beetle": ("Arthropoda", "Insecta", "Coleoptera", "Carabidae", "Carabus", "Carabus nemoralis"),
    "Spider": ("Arthropoda", "Arachnida", "Araneae", "Araneidae", "Araneus", "Araneus diadematus"),
}
OFFTASK_SPECIES = [
    ("Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "Turdus migratorius"),
    ("Arthropoda", "Insecta", "Hymenoptera", "Tenthredinidae", "Tenthredo", "Tenthredo arcuata"),
]
COLOURS = [(200, 40, 40), (230, 200, 30), (40, 90, 200), (40, 160, 60), (150, 60, 170), (240, 130, 20)]


def fake_photo(kind: int, seed: int) -> Image.Image:
    """A small RGB image of a class-dependent blob; its size varies with ``seed``."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(40, 72)), int(rng.integers(40, 72))
    background = rng.integers(60, 140, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(background)
    draw = ImageDraw.Draw(img)
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[kind % len(COLOURS)])
    tall = kind % 2 == 0
    cx, cy = w / 2 + rng.integers(-4, 5), h / 2 + rng.integers(-4, 5)
    rx, ry = (w / 6, h / 2.6) if tall else (w / 2.6, h / 6)
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
    return img


def make_inat_tree(root: Path, per_species: int = 30, offtask_per_species: int = 10, split: str = "train",
                   seed: int = 0) -> dict:
    """The official iNaturalist 2021 layout (``<split>.json`` + ``<split>/<species dir>/*.jpg``)."""
    species = [(cat, row) for cat, row in CATEGORY_SPECIES.items()] + [("off-task", row) for row in OFFTASK_SPECIES]
    categories, images, annotations = [], [], []
    image_id = 0
    for c, (cat, (phylum, cls, order, family, genus, name)) in enumerate(species):
        dir_name = f"{c:05d}_Animalia_{phylum}_{cls}_{order}_{family}_{genus}_{name.split()[1]}"
        categories.append({"id": c, "name": name, "kingdom": "Animalia", "phylum": phylum, "class": cls,
                           "order": order, "family": family, "genus": genus, "image_dir_name": dir_name})
        n = per_species if cat != "off-task" else offtask_per_species
        for _ in range(n):
            file_name = f"{split}/{dir_name}/{image_id:08x}.jpg"
            path = root / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            fake_photo(c, seed * 100_003 + image_id).save(path, format="JPEG", quality=90)
            images.append({"id": image_id, "file_name": file_name})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": c})
            image_id += 1
    doc = {"info": {}, "images": images, "annotations": annotations, "categories": categories}
    (root / f"{split}.json").write_text(json.dumps(doc))
    return doc


def make_insects_tree(root: Path, per_class: int = 20, seed: int = 1) -> dict[str, int]:
    """The Insects Image Dataset layout (plural class folders, as the real dataset names them)."""
    counts = {}
    for c, cat in enumerate(CATEGORY_SPECIES):
        folder = root / f"{cat.lower()}s"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            fake_photo(c, seed * 100_003 + 50_000 + 100 * c + j).save(folder / f"{j:04d}.jpg", format="JPEG")
        counts[cat] = per_class
    return counts


def plant_copy(src: Path, dest: Path) -> None:
    """Copy ``src`` byte for byte to ``dest`` (a leak or a duplicate the code must catch)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
