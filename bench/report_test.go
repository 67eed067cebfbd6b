package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// table is one result table. It prints as Markdown, so the same text reads
// in a terminal and pastes into docs/benchmarks.md.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
}

func newTable(title string, header ...string) *table {
	return &table{title: title, header: header}
}

// add appends a row; each cell is formatted with fmt.Sprint.
func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = fmt.Sprint(c)
	}
	t.rows = append(t.rows, row)
}

// note adds a line printed under the table.
func (t *table) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

func (t *table) print() {
	width := make([]int, len(t.header))
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var sb strings.Builder
	line := func(row []string) {
		sb.WriteString("|")
		for i, c := range row {
			fmt.Fprintf(&sb, " %s%s |", c, strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)))
		}
		sb.WriteString("\n")
	}
	fmt.Fprintf(&sb, "\n### %s\n\n", t.title)
	line(t.header)
	sep := make([]string, len(width))
	for i, w := range width {
		sep[i] = strings.Repeat("-", w)
	}
	line(sep)
	for _, row := range t.rows {
		line(row)
	}
	if len(t.notes) > 0 {
		sb.WriteString("\n")
		for _, n := range t.notes {
			fmt.Fprintf(&sb, "%s\n", n)
		}
	}
	fmt.Print(sb.String())
}

// ms formats d in milliseconds.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// percentile returns the q-quantile of ds by nearest rank.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// median of ds.
func median(ds []time.Duration) time.Duration { return percentile(ds, 0.5) }

// verdict formats a goal's outcome.
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

var machineOnce sync.Once

// printMachine prints, once per run, what the figures were measured on. The
// load average matters here: other work on the machine shows in every
// figure.
func printMachine(e *env) {
	machineOnce.Do(func() {
		ctx := context.Background()
		var pgVersion string
		if err := e.Pool.QueryRow(ctx, `SHOW server_version`).Scan(&pgVersion); err != nil {
			e.tb.Fatal(err)
		}
		redisVersion := "?"
		if info, err := e.rdb.InfoMap(ctx, "server").Result(); err == nil {
			redisVersion = info["Server"]["redis_version"]
		}
		t := newTable("Machine", "what", "value")
		t.add("CPU", cpuModel())
		t.add("cores (runtime.NumCPU)", runtime.NumCPU())
		t.add("PostgreSQL", pgVersion)
		t.add("Redis", redisVersion)
		t.add("Go", runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH)
		t.add("load average at start (1/5/15 min)", loadAverage())
		t.print()
	})
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
