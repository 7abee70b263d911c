// Package benchtool is the machinery behind bench/compare: it runs
// punchline side by side with the reference servers of its field, Kamailio
// (SIP registrar and stateful proxy, RFC 3261) and coturn (TURN, RFC 8656),
// under the same loads on the same machine, and reports medians and the
// ratio punchline/reference for each figure.
//
// The pure parts live in their own files and are tested without any
// server: the sipp statistics parser (sippstats.go), the turnutils_uclient
// output parser (uclient.go), the /proc readers for CPU time and resident
// memory (proc.go), medians, ratios and the bounded rate search
// (stats.go, search.go) and the report writer (report.go). The parts that
// start real processes (servers.go, loads.go, harness.go) are driven by
// cmd/benchcompare, which bench/compare builds and runs.
//
// Every load is bounded in count and time, and every socket is on
// loopback.
package benchtool
