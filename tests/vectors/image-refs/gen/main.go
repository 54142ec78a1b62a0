package main

import (
	"bufio"
	"encoding/json"
	"os"

	"github.com/distribution/reference"
	_ "crypto/sha256"
	_ "crypto/sha512"
)

type out struct {
	In     string `json:"in"`
	Ok     bool   `json:"ok"`
	Domain string `json:"domain,omitempty"`
	Path   string `json:"path,omitempty"`
	Tag    string `json:"tag,omitempty"`
	Digest string `json:"digest,omitempty"`
	Err    string `json:"err,omitempty"`
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	for sc.Scan() {
		var in string
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			panic(err)
		}
		o := out{In: in}
		n, err := reference.ParseNormalizedNamed(in)
		if err != nil {
			o.Err = err.Error()
		} else {
			o.Ok = true
			o.Domain = reference.Domain(n)
			o.Path = reference.Path(n)
			if t, ok := n.(reference.Tagged); ok {
				o.Tag = t.Tag()
			}
			if d, ok := n.(reference.Digested); ok {
				o.Digest = d.Digest().String()
			}
		}
		enc.Encode(o)
	}
}
