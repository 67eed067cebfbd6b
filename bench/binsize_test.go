package bench

import (
	"cmp"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// largestModules returns the n modules with the most machine code in bin,
// as "module 1.2 MB (17%)". Code is what the binary's size follows: the
// PC tables (.gopclntab) grow with it, and the DWARF that -s -w strips
// describes it.
func largestModules(b *testing.B, bin string, n int) []string {
	out, err := exec.Command("go", "tool", "nm", "-size", bin).Output()
	if err != nil {
		b.Fatalf("go tool nm: %v", err)
	}
	code := map[string]int64{}
	var total int64
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[2] != "T" && f[2] != "t") {
			continue
		}
		size, _ := strconv.ParseInt(f[1], 10, 64)
		code[moduleOf(f[3])] += size
		total += size
	}
	mods := make([]string, 0, len(code))
	for m := range code {
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b string) int { return cmp.Compare(code[b], code[a]) })
	var top []string
	for _, m := range mods[:min(n, len(mods))] {
		top = append(top, fmt.Sprintf("%s %.1f MB (%.0f%%)", m, float64(code[m])/1e6, 100*float64(code[m])/float64(total)))
	}
	return top
}

// moduleOf maps a symbol to its module: the first three elements of a
// package path with a domain ("github.com/jackc/pgx"), or "Go standard
// library".
func moduleOf(sym string) string {
	for _, p := range []string{"type:", "go:itab.", ".eq.", "*"} {
		sym = strings.TrimPrefix(sym, p)
	}
	head, _, _ := strings.Cut(sym, "(")
	head, _, _ = strings.Cut(head, "[")
	pkg := head
	if dot := strings.IndexByte(head[strings.LastIndexByte(head, '/')+1:], '.'); dot >= 0 {
		pkg = head[:strings.LastIndexByte(head, '/')+1+dot]
	}
	parts := strings.Split(pkg, "/")
	if !strings.Contains(parts[0], ".") {
		return "Go standard library"
	}
	return strings.Join(parts[:min(3, len(parts))], "/")
}
