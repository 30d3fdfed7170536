// Command litefs mounts a FUSE filesystem in front of SQLite databases and
// replicates every write transaction from the primary node to its replicas.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "litefs: not yet implemented")
	os.Exit(1)
}
