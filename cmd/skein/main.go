// Command skein is the mesh's command-line tool. Each command group lives in
// its own file and only turns flags into a call to the package that does
// the work.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "skein:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "skein",
		Short:         "Skein service mesh",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newIdentityCommand())
	root.AddCommand(newStatCommand())
	root.AddCommand(newEdgesCommand())
	root.AddCommand(newRoutesCommand())
	root.AddCommand(newTapCommand(), newTopCommand())
	root.AddCommand(newDiffCommand())
	root.AddCommand(newDashboardCommand())
	root.AddCommand(newAuthzCommand())
	root.AddCommand(newUpCommand(), newDownCommand(), newLogsCommand(), newDemoCommand())
	root.AddCommand(newInstallCommand(), newUpgradeCommand(), newUninstallCommand())
	root.AddCommand(newCheckCommand())
	root.AddCommand(newInjectCommand())
	return root
}
