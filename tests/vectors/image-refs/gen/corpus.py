"""Prints image reference inputs, one JSON string a line: a product of tricky parts plus random strings."""
import itertools
import json
import random

random.seed(7)
H = "0123456789abcdef" * 4
REGISTRIES = ["", "gcr.io/", "localhost/", "localhost:5000/", "Foo/", "FOO.io/", "my_ns.com/", "index.docker.io/",
              "docker.io/", "[::1]:5000/", "[::1]/", "[2001:db8::1]:443/", "a-b.c/", "-a.b/", "a..b/", "127.0.0.1/",
              "x:y/", "gcr.io:/", "gcr.io:0/", "[fe80::1%eth0]/", "registry-1.docker.io/", "a/", "Index.docker.io/",
              "LOCALHOST/", "loc_al/"]
PATHS = ["nginx", "library/nginx", "a/b/c", "A/b", "a__b", "a___b", "a--b", "a.-b", "a_b", "a.b.c", "", "a//b", "Nginx",
         "0", "a/", "-a", ".a", "a.", "x" * 250, "x" * 247, "x" * 248, "ä", H, "a b"]
TAGS = ["", ":v1", ":", ":-x", ":_x", ":Tag.1", ":ä", ":" + "t" * 128, ":" + "t" * 129, ":a:b", ":a/b", ":.x"]
DIGESTS = ["", "@sha256:" + H, "@sha256:" + H[:63], "@sha512:" + H + H, "@sha384:" + (H + H)[:96], "@SHA256:" + H,
           "@sha256:" + H.upper(), "@", "@md5:" + H[:32], "@sha256:" + H + "@sha256:" + H, "@" + H]
seen = set()


def emit(s):
    if s not in seen:
        seen.add(s)
        print(json.dumps(s))


for parts in itertools.product(REGISTRIES, PATHS, TAGS, DIGESTS):
    emit("".join(parts))
for _ in range(30000):
    emit("".join(random.choice("aAz0._-:/@[]") for _ in range(random.randint(0, 12))))
