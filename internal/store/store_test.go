package store

import (
	"fmt"
	"testing"
)

// BenchmarkUser measures reading one account among 10,000, as the
// registrar does for every authenticated request its cache misses.
func BenchmarkUser(b *testing.B) {
	st, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	accounts := map[string]string{}
	for i := range 10000 {
		accounts[fmt.Sprintf("u%05d", i)] = "pw"
	}
	if err := st.AddUsers("punchline", accounts, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := st.User(fmt.Sprintf("u%05d", i%10000)); err != nil {
			b.Fatal(err)
		}
	}
}
