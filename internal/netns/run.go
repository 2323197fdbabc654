package netns

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// run runs a tool to completion and returns its stdout; the error carries
// the command line and whatever the tool printed on stderr.
func run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// ipBatch runs several `ip` commands inside namespace ns in one process.
func ipBatch(ctx context.Context, ns string, lines ...string) error {
	_, err := run(ctx, strings.Join(lines, "\n")+"\n", "ip", "-n", ns, "-batch", "-")
	if err != nil {
		return fmt.Errorf("in namespace %s: %w", ns, err)
	}
	return nil
}
