// Command grpccapture is the real-Skaffold tests' independent gRPC witness: a
// client that knows nothing of Skaffold's messages and records the bytes exactly
// as Skaffold sent them.
//
//	grpccapture events   -addr 127.0.0.1:50051 -api v1|v2 -out FILE
//	grpccapture getstate -addr 127.0.0.1:50051 -out FILE
//	grpccapture proxy    -listen 127.0.0.1:P -addr 127.0.0.1:50051 -out FILE
//
// `events` subscribes to proto.SkaffoldService/Events (v1) or
// proto.v2.SkaffoldV2Service/Events (v2) and appends every message to FILE as a
// uvarint length followed by the message's protobuf bytes, flushed per message
// (prost's length-delimited framing), until Skaffold closes the stream, it goes
// away, or the process gets SIGINT/SIGTERM. It prints one line per message count
// milestone on stderr and exits 0 when the stream ended (EOF or Skaffold gone).
//
// `getstate` calls proto.SkaffoldService/GetState once and writes the raw response
// bytes to FILE: a passthrough that re-encodes would not be byte-identical.
//
// `proxy` serves every method of the upstream at -listen and forwards each call
// (unary or streaming, either direction) as raw bytes, writing the bytes of the
// last GetState response it forwarded to FILE: put between an exporter and
// Skaffold, it shows what Skaffold answered the exporter, so the exporter's own
// answer can be compared byte for byte (Skaffold encodes the State's maps in Go's
// random map order, so two GetState calls need not return the same bytes).
//
// Requests are google.protobuf.Empty (zero bytes); a codec that passes bytes
// through unchanged keeps the messages undecoded.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// rawCodec hands message bytes through untouched. Its name is "proto" so the
// content type stays application/grpc+proto, which is what Skaffold serves.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grpccapture events|getstate -addr HOST:PORT [-api v1|v2] -out FILE")
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:50051", "Skaffold's (or the exporter's) gRPC address")
	api := fs.String("api", "v2", "event API: v1 or v2")
	out := fs.String("out", "", "output file (- for stdout)")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of getstate")
	listen := fs.String("listen", "127.0.0.1:0", "proxy: address to serve on")
	_ = fs.Parse(os.Args[2:])
	if *out == "" {
		fmt.Fprintln(os.Stderr, "grpccapture: -out is required")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpccapture:", err)
		os.Exit(1)
	}
	defer conn.Close()
	switch cmd {
	case "events":
		err = events(conn, *api, *out)
	case "getstate":
		err = getState(conn, *out, *timeout)
	case "proxy":
		err = proxy(conn, *listen, *out)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpccapture:", err)
		os.Exit(1)
	}
}

func create(path string) (io.WriteCloser, error) {
	if path == "-" {
		return os.Stdout, nil
	}
	return os.Create(path)
}

func getState(conn *grpc.ClientConn, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, resp := []byte{}, []byte{}
	if err := conn.Invoke(ctx, "/proto.SkaffoldService/GetState", &req, &resp, grpc.ForceCodec(rawCodec{})); err != nil {
		return err
	}
	f, err := create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(resp); err != nil {
		return err
	}
	return f.Close()
}

func events(conn *grpc.ClientConn, api, path string) error {
	method := map[string]string{
		"v1": "/proto.SkaffoldService/Events",
		"v2": "/proto.v2.SkaffoldV2Service/Events",
	}[api]
	if method == "" {
		return fmt.Errorf("-api must be v1 or v2, not %q", api)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f, err := create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	desc := &grpc.StreamDesc{StreamName: "Events", ServerStreams: true}
	stream, err := conn.NewStream(ctx, desc, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	req := []byte{}
	if err := stream.SendMsg(&req); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	n := 0
	var lenBuf [binary.MaxVarintLen64]byte
	for {
		msg := []byte{}
		err := stream.RecvMsg(&msg)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				fmt.Fprintf(os.Stderr, "grpccapture: %s stream ended after %d messages\n", api, n)
				return w.Flush()
			}
			// Skaffold exiting closes the connection: that ends a capture too.
			fmt.Fprintf(os.Stderr, "grpccapture: %s stream ended after %d messages: %v\n", api, n, err)
			return w.Flush()
		}
		k := binary.PutUvarint(lenBuf[:], uint64(len(msg)))
		if _, err := w.Write(lenBuf[:k]); err != nil {
			return err
		}
		if _, err := w.Write(msg); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		n++
	}
}

const getStateMethod = "/proto.SkaffoldService/GetState"

func proxy(upstream *grpc.ClientConn, listen, record string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	handler := func(_ any, down grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(down)
		desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
		up, err := upstream.NewStream(down.Context(), desc, method, grpc.ForceCodec(rawCodec{}))
		if err != nil {
			return err
		}
		go func() {
			for {
				msg := []byte{}
				if err := down.RecvMsg(&msg); err != nil {
					_ = up.CloseSend()
					return
				}
				if err := up.SendMsg(&msg); err != nil {
					return
				}
			}
		}()
		for {
			msg := []byte{}
			if err := up.RecvMsg(&msg); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if method == getStateMethod {
				if err := os.WriteFile(record, msg, 0o644); err != nil {
					return err
				}
			}
			if err := down.SendMsg(&msg); err != nil {
				return err
			}
		}
	}
	s := grpc.NewServer(grpc.UnknownServiceHandler(handler), grpc.ForceServerCodec(rawCodec{}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		s.Stop()
	}()
	fmt.Fprintf(os.Stderr, "grpccapture: proxying %s to %s\n", l.Addr(), upstream.Target())
	return s.Serve(l)
}
