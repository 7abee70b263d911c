// Command natprobe measures NAT behaviour the RFC 5780 way: run "natprobe
// serve" on a host with two public addresses and "natprobe discover" behind
// the NAT. The kernel NAT lab (internal/lab) runs it inside its namespaces.
package main

import (
	"os"

	"github.com/punchline/punchline/internal/lab"
)

func main() {
	os.Exit(lab.ProbeMain(os.Args[1:], os.Stdout, os.Stderr))
}
