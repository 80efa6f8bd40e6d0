// The Go examples of the KServe API clients document, each in its own function, as printed
// with the fixes needed to compile: the connection is assigned (`conn, err := grpc.Dial(...)`),
// `ctx` exists, the image request is declared before its raw contents are appended, and the
// names are the test's (address, model, input, file). Prints one JSON object of what came back.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"time"

	grpc_client "inference"

	"google.golang.org/grpc"
)

var address = os.Args[1]
var fileName = os.Args[2]
var ctx = context.Background()

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func health() map[string]bool {
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	check(err)
	client := grpc_client.NewGRPCInferenceServiceClient(conn)

	serverLiveRequest := grpc_client.ServerLiveRequest{}
	serverLiveResponse, err := client.ServerLive(ctx, &serverLiveRequest)
	check(err)

	serverReadyRequest := grpc_client.ServerReadyRequest{}
	serverReadyResponse, err := client.ServerReady(ctx, &serverReadyRequest)
	check(err)

	modelReadyRequest := grpc_client.ModelReadyRequest{
		Name:    "model_name",
		Version: "1",
	}
	modelReadyResponse, err := client.ModelReady(ctx, &modelReadyRequest)
	check(err)
	return map[string]bool{
		"live":        serverLiveResponse.Live,
		"ready":       serverReadyResponse.Ready,
		"model_ready": modelReadyResponse.Ready,
	}
}

func metadata() (string, []string) {
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	check(err)
	client := grpc_client.NewGRPCInferenceServiceClient(conn)

	serverMetadataRequest := grpc_client.ServerMetadataRequest{}
	serverMetadataResponse, err := client.ServerMetadata(ctx, &serverMetadataRequest)
	check(err)

	modelMetadataRequest := grpc_client.ModelMetadataRequest{
		Name:    "model_name",
		Version: "1",
	}
	modelMetadataResponse, err := client.ModelMetadata(ctx, &modelMetadataRequest)
	check(err)
	inputs := []string{}
	for _, input := range modelMetadataResponse.Inputs {
		inputs = append(inputs, input.Name+" "+input.Datatype)
	}
	return serverMetadataResponse.Name, inputs
}

func encodedImage() []int64 {
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	check(err)
	client := grpc_client.NewGRPCInferenceServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	inferInputs := []*grpc_client.ModelInferRequest_InferInputTensor{
		&grpc_client.ModelInferRequest_InferInputTensor{
			Name:     "input_name",
			Datatype: "BYTES",
			Shape:    []int64{1},
		},
	}

	modelInferRequest := grpc_client.ModelInferRequest{
		ModelName:    "image",
		ModelVersion: "1",
		Inputs:       inferInputs,
	}

	bytes, err := ioutil.ReadFile(fileName)
	check(err)
	modelInferRequest.RawInputContents = append(modelInferRequest.RawInputContents, bytes)

	modelInferResponse, err := client.ModelInfer(ctx, &modelInferRequest)
	check(err)
	return modelInferResponse.Outputs[0].Shape
}

func numpyArray() []byte {
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	check(err)
	client := grpc_client.NewGRPCInferenceServiceClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	inputSize := 10
	inputData := make([]float32, inputSize)
	for i := 0; i < inputSize; i++ {
		inputData[i] = float32(i)
	}

	inferInputs := []*grpc_client.ModelInferRequest_InferInputTensor{
		&grpc_client.ModelInferRequest_InferInputTensor{
			Name:     "input_name",
			Datatype: "FP32",
			Shape:    []int64{1, 10},
			Contents: &grpc_client.InferTensorContents{
				Fp32Contents: inputData,
			},
		},
	}

	modelInferRequest := grpc_client.ModelInferRequest{
		ModelName:    "model_name",
		ModelVersion: "1",
		Inputs:       inferInputs,
	}

	modelInferResponse, err := client.ModelInfer(ctx, &modelInferRequest)
	check(err)
	return modelInferResponse.RawOutputContents[0]
}

func main() {
	name, inputs := metadata()
	out, err := json.Marshal(map[string]interface{}{
		"health":      health(),
		"server_name": name,
		"inputs":      inputs,
		"image_shape": encodedImage(),
		"numpy_raw":   numpyArray(),
	})
	check(err)
	fmt.Println(string(out))
}
