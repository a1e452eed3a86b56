// Command protojson renders binary protobuf messages as JSON exactly as Skaffold's
// HTTP gateway does (pkg/skaffold/server/server.go: grpc-gateway's runtime.JSONPb
// with protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}), for
// the exporter's tests: they compare our /v1/state JSON with this output.
//
//	protojson DESCRIPTORS MESSAGE < message.bin > message.json
//
// DESCRIPTORS is a binary google.protobuf.FileDescriptorSet holding MESSAGE (a full
// name such as proto.State) and everything it depends on; the message is read from
// stdin in the binary wire format. The message is built with dynamicpb from those
// descriptors: protojson sees the same protoreflect view as with generated types.
package main

import (
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: protojson DESCRIPTORS MESSAGE < message.bin")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "protojson:", err)
		os.Exit(1)
	}
}

func run(descriptors, message string) error {
	raw, err := os.ReadFile(descriptors)
	if err != nil {
		return err
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return fmt.Errorf("descriptor set: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return fmt.Errorf("descriptor set: %w", err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(message))
	if err != nil {
		return err
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return fmt.Errorf("%s is not a message", message)
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	m := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(in, m); err != nil {
		return fmt.Errorf("message: %w", err)
	}
	out, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}
