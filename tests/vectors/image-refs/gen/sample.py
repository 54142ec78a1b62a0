"""Keeps a seeded sample of distribution/reference's answers: 400 accepted inputs binauthz must
accept alike, 50 accepted inputs binauthz deliberately refuses, and 400 refused inputs."""
import json
import random
import sys

random.seed(11)
rows = [json.loads(line) for line in sys.stdin]


def deliberate(r):
    return r.get("domain", "") == "" or not r.get("digest", "sha256:").startswith("sha256:")


alike = [r for r in rows if r["ok"] and not deliberate(r)]
different = [r for r in rows if r["ok"] and deliberate(r)]
refused = [r for r in rows if not r["ok"]]
sample = random.sample(alike, 400) + random.sample(different, 50) + random.sample(refused, 400)
for row in sorted(sample, key=lambda r: r["in"]):
    print(json.dumps(row, ensure_ascii=False, sort_keys=True))
