package balance

import (
	"context"
	"fmt"
	"testing"
)

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 100} {
		bal := New(DefaultOptions())
		bal.Update(endpoints(testAddrs(n)...))
		ctx := context.Background()
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h, err := bal.Pick(ctx)
				if err != nil {
					b.Fatal(err)
				}
				h.Done(false)
			}
		})
		b.Run(fmt.Sprintf("endpoints=%d/parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					h, err := bal.Pick(ctx)
					if err != nil {
						b.Fatal(err)
					}
					h.Responded()
					h.Done(false)
				}
			})
		})
	}
}
