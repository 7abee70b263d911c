//go:build race

package sip

// raceEnabled: under the race detector sync.Pool drops a share of what is
// put back on purpose, so allocation budgets do not apply.
const raceEnabled = true
