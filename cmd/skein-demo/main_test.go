package main

import (
	"bytes"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/skeinmesh/skein/demo"
)

// TestManifestCommandsParse checks that every command of the demo's
// manifests is one skein-demo accepts, flags included.
func TestManifestCommandsParse(t *testing.T) {
	commands := 0
	for _, doc := range strings.Split(string(demo.Manifests), "\n---\n") {
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
			Spec     struct{ Command []string }
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind != "Workload" {
			continue
		}
		commands++
		cmd := obj.Spec.Command
		if len(cmd) < 2 || cmd[0] != "skein-demo" {
			t.Errorf("workload %s: command %q does not run skein-demo", obj.Metadata.Name, cmd)
			continue
		}
		var stderr bytes.Buffer
		if start, code := parse(cmd[1:], &stderr); start == nil {
			t.Errorf("workload %s: command %q: exit %d: %s", obj.Metadata.Name, cmd, code, stderr.String())
		}
	}
	if commands != 4 {
		t.Errorf("found %d workload commands, want 4", commands)
	}
}

func TestParseRejects(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"nonsense"},
		{"web", "--no-such-flag"},
		{"emoji", "extra"},
		{"vote-bot", "--rate=fast"},
	} {
		var stderr bytes.Buffer
		if start, code := parse(args, &stderr); start != nil || code != 2 {
			t.Errorf("parse(%q) = (start %v, %d), want nothing to run and exit 2", args, start != nil, code)
		}
	}
}
