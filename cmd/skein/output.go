package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// Output formats every data-printing command accepts with -o.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// addOutputFlag registers -o/--output on cmd and returns where its value
// lands.
func addOutputFlag(cmd *cobra.Command) *string {
	return cmd.Flags().StringP("output", "o", outputTable, "output format: table or json")
}

// printOutput writes v as indented JSON, or calls table with a tab-aligned
// writer.
func printOutput(w io.Writer, format string, v any, table func(w io.Writer)) error {
	switch format {
	case outputJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case outputTable, "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	default:
		return fmt.Errorf("unknown output format %q (want table or json)", format)
	}
}
