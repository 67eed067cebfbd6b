package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
)

// Cold-start samples: starts timed against a stand-in Runtime API, and
// starts under aws-lambda-rie whose own INIT REPORT is read.
const (
	initSamples = 20
	rieSamples  = 5
	// rssInvokes is how many requests the function serves before its
	// resident memory is read: half deletes (of fresh threads), half 404s.
	rssInvokes = 1000
)

// benchLambda measures the delete-thread function as Lambda runs it: the
// size of its binaries, its init time (process start to its first request
// for an event; it connects to nothing during init), and its resident
// memory after serving requests under aws-lambda-rie.
func benchLambda(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	root := testenv.RepoRoot(b)
	bin := filepath.Join(root, "build", "delete-thread", "bootstrap")
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("%s missing: run `make build` first (`make bench` does)", bin)
	}
	env := e.functionEnv()

	sizes := newTable("Binary size (goal ≤ 15 MB)", "binary", "bytes", "MB", "goal")
	// The goal is for what is deployed; the host build is shown for scale.
	for _, s := range []struct {
		name, path string
		deployed   bool
	}{
		{"build/delete-thread/bootstrap (make build: host arch, -s -w)", bin, false},
		{"linux/arm64, -ldflags='-s -w' (make build-DeleteThreadFunction, what SAM deploys)", armBuild(b, root), true},
	} {
		st, err := os.Stat(s.path)
		if err != nil {
			b.Fatal(err)
		}
		mb := float64(st.Size()) / 1e6
		goal := "(not deployed)"
		if s.deployed {
			goal = verdict(mb <= 15)
		}
		sizes.add(s.name, st.Size(), fmt.Sprintf("%.1f", mb), goal)
	}
	sizes.note("Where the bytes go (symbol sizes of an unstripped host build, by module): %s.", strings.Join(largestModules(b, unstrippedBuild(b, root), 6), ", "))
	sizes.print()

	t := newTable("Cold start and footprint", "measure", "samples", "p50", "max", "goal")
	var starts []time.Duration
	for range initSamples {
		starts = append(starts, timeInit(b, bin, env))
	}
	t.add("init: exec to first request for an event (stand-in Runtime API)", initSamples, ms(median(starts)), ms(slicesMax(starts)),
		"≤ 50 ms: "+verdict(median(starts) <= 50*time.Millisecond))
	var reports []time.Duration
	for range rieSamples {
		reports = append(reports, rieInit(b, bin, env))
	}
	t.add("init: aws-lambda-rie INIT REPORT durationMs", rieSamples, ms(median(reports)), ms(slicesMax(reports)),
		"≤ 50 ms: "+verdict(median(reports) <= 50*time.Millisecond))

	rss := e.residentAfterInvokes(b, bin, env)
	t.add("RSS of the bootstrap process after its first invoke", 1, kbToMB(rss.first), "", "")
	t.add(fmt.Sprintf("RSS after %d invokes (%d deletes, %d not found)", rssInvokes, rssInvokes/2, rssInvokes/2), 1,
		kbToMB(rss.after), "peak (VmHWM) "+kbToMB(rss.peak), "≤ 40 MB: "+verdict(rss.after <= 40*1000 && rss.peak <= 40*1000))
	t.add("invoke through aws-lambda-rie, end to end (JWT check, delete or 404, Redis, SQS)", rssInvokes, ms(rss.p50), ms(rss.max), "")
	t.note("Round trips of those %d invokes, counted at the proxies: PostgreSQL %d (want %d), Redis %d (want %d), SQS %d (want %d).",
		rssInvokes, rss.trips.pg, rssInvokes, rss.trips.redis, rssInvokes/2, rss.trips.sqs, rssInvokes/4)
	t.print()
}

// functionEnv is the delete-thread function's configuration for this
// environment, reaching every service through the proxies (with no delay),
// so that the function's own round trips can be counted.
func (e *env) functionEnv() []string {
	return append(testenv.AWSEnv("http://"+e.sqsProxy.Addr),
		"DATABASE_URL="+testenv.ViaAddr(e.dbURL, e.pgProxy.Addr),
		"REDIS_URL="+withHost(e.tb, e.redisURL, e.redisProxy.Addr),
		"SANDBOX_CLEANUP_QUEUE_URL="+e.queueURL,
		"SUPABASE_JWT_SECRET="+testenv.JWTSecret,
	)
}

// armBuild builds the deployment artifact exactly as `sam build` does and
// returns its path.
func armBuild(b *testing.B, root string) string {
	dir := b.TempDir()
	cmd := exec.Command("make", "-s", "build-DeleteThreadFunction", "ARTIFACTS_DIR="+dir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("make build-DeleteThreadFunction: %v\n%s", err, out)
	}
	return filepath.Join(dir, "bootstrap")
}

// unstrippedBuild builds the function for the host with its symbol table,
// which the stripped builds lack, so that its code can be attributed.
func unstrippedBuild(b *testing.B, root string) string {
	out := filepath.Join(b.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", out, "./functions/delete-thread")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, msg)
	}
	return out
}

// timeInit starts bin against a stand-in Runtime API and returns the time
// from exec to its first GET .../runtime/invocation/next: the function's
// whole init, including the Go runtime, its configuration and the
// extension registration that lambda.WithEnableSIGTERM makes.
func timeInit(b *testing.B, bin string, env []string) time.Duration {
	ready := make(chan time.Time, 1)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/extension/register"):
			w.Header().Set("Lambda-Extension-Identifier", "bench")
			io.WriteString(w, `{}`) //nolint:errcheck
			return
		case strings.HasSuffix(r.URL.Path, "/runtime/invocation/next"):
			select {
			case ready <- time.Now():
			default:
			}
		}
		<-r.Context().Done() // no event ever comes
	}))
	defer api.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), env...), "AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(api.URL, "http://"))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait() //nolint:errcheck
		api.CloseClientConnections()
	}()
	select {
	case at := <-ready:
		return at.Sub(start)
	case <-time.After(10 * time.Second):
		b.Fatal("the function never asked for an event")
		return 0
	}
}

var initReport = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// rieInit starts bin under aws-lambda-rie, invokes it once (an invalid id:
// no I/O) and returns the init duration the emulator reports.
func rieInit(b *testing.B, bin string, env []string) time.Duration {
	fn := testenv.StartLambda(b, bin, env)
	fn.Invoke(b, testenv.DeleteEvent(b, "not-a-uuid", "x"))
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := initReport.FindStringSubmatch(fn.Logs()); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			return time.Duration(v * float64(time.Millisecond))
		}
	}
	b.Fatalf("no INIT REPORT from aws-lambda-rie:\n%s", fn.Logs())
	return 0
}

// footprint is what residentAfterInvokes measured.
type footprint struct {
	first, after, peak int64 // kB
	p50, max           time.Duration
	trips              trips
}

// residentAfterInvokes runs a private copy of bin under aws-lambda-rie
// (so that its process can be told apart from any other), serves
// rssInvokes requests and reads the bootstrap process's resident memory.
func (e *env) residentAfterInvokes(b *testing.B, bin string, env []string) footprint {
	own := filepath.Join(b.TempDir(), "bootstrap")
	data, err := os.ReadFile(bin)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(own, data, 0o755); err != nil {
		b.Fatal(err)
	}
	// Half the requests delete: both threads of each project, so the
	// second takes the project and its sandbox with it.
	fixtures := e.seedN(rssInvokes/4+1, shape{threads: 2, messages: 20, runs: 2, docs: 2, sandbox: true})
	e.analyze()
	warm, fixtures := fixtures[0], fixtures[1:]

	fn := testenv.StartLambda(b, own, env)
	invoke := func(thread, owner string, want int) time.Duration {
		start := time.Now()
		raw := fn.Invoke(b, testenv.DeleteEvent(b, thread, testenv.Token(owner)))
		took := time.Since(start)
		var resp struct {
			StatusCode int `json:"statusCode"`
		}
		if err := json.Unmarshal(raw, &resp); err != nil || resp.StatusCode != want {
			b.Fatalf("invoke: status %d, want %d: %s\nlogs:\n%s", resp.StatusCode, want, raw, fn.Logs())
		}
		return took
	}
	// Init, and the connections to PostgreSQL and Redis (a per-environment
	// cost): not counted.
	invoke(warm.threads[0], warm.owner, 200)
	var fp footprint
	pid := bootstrapPid(b, own)
	fp.first, _ = procStatusKB(pid, "VmRSS")

	before := e.trips()
	var took []time.Duration
	for i := range rssInvokes {
		f := fixtures[i/4]
		switch i % 4 {
		case 0, 2:
			took = append(took, invoke(testenv.NewUUID(), f.owner, 404))
		case 1:
			took = append(took, invoke(f.threads[0], f.owner, 200))
		case 3:
			took = append(took, invoke(f.threads[1], f.owner, 200))
		}
	}
	fp.trips = e.trips().since(before)
	fp.after, _ = procStatusKB(pid, "VmRSS")
	fp.peak, _ = procStatusKB(pid, "VmHWM")
	fp.p50, fp.max = median(took), slicesMax(took)
	if n := e.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, fixtures[len(fixtures)-1].project); n != 0 {
		b.Fatal("the last project survived the deletes of its threads")
	}
	return fp
}

// bootstrapPid finds the process running the private copy own and checks
// it is the child of aws-lambda-rie.
func bootstrapPid(b *testing.B, own string) int {
	pids := pidsByExe(own)
	if len(pids) != 1 {
		b.Fatalf("%d processes run %s, want 1", len(pids), own)
	}
	parent, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", parentOf(pids[0])))
	if filepath.Base(parent) != "aws-lambda-rie" {
		b.Fatalf("bootstrap's parent is %q, not aws-lambda-rie", parent)
	}
	return pids[0]
}

func kbToMB(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1000) }

func slicesMax(ds []time.Duration) time.Duration { return percentile(ds, 1) }
