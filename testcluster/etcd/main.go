// Command etcd is etcd's server built from its Go module, for Skein's test
// cluster: etcd's own main lives in a module that cannot be required, so this
// wrapper calls the same entry point. Built by scripts/testcluster.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
