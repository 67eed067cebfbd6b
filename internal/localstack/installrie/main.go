// Command installrie installs the pinned Lambda runtime interface emulator
// (localstack.RIEModule) into .bin/ of the repository, unless that version
// is there already: what `make tools` runs, so that the version is written
// down once, in Go.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kortix-ai/thread-delete/internal/localstack"
)

func main() {
	root, err := localstack.RepoRoot()
	if err == nil {
		_, err = localstack.InstallRIE(context.Background(), root)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "installrie:", err)
		os.Exit(1)
	}
}
