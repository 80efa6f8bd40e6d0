// The Java examples of the KServe API clients document, each in its own method, as printed
// with the fixes needed to compile and run: `boolean` for `bool`, the image request gets its
// input (`request.addInputs(input)`, missing in the example), and the names are the test's
// (address, model, input, file). Prints one line of what came back.

import com.google.protobuf.ByteString;
import inference.GRPCInferenceServiceGrpc;
import inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub;
import inference.GrpcService.*;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.io.FileInputStream;
import java.util.Arrays;
import java.util.List;

public class KServeClient {
    static String host;
    static int port;
    static String imagePath;

    static String health() {
        ManagedChannel channel = ManagedChannelBuilder
                        .forAddress(host, port)
                        .usePlaintext().build();
        GRPCInferenceServiceBlockingStub grpc_stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);

        ServerLiveRequest.Builder serverLiveRequest = ServerLiveRequest.newBuilder();
        ServerLiveResponse serverLiveResponse = grpc_stub.serverLive(serverLiveRequest.build());

        boolean serverLive = serverLiveResponse.getLive();

        ServerReadyRequest.Builder serverReadyRequest = ServerReadyRequest.newBuilder();
        ServerReadyResponse serverReadyResponse = grpc_stub.serverReady(serverReadyRequest.build());

        boolean serverReady = serverReadyResponse.getReady();

        ModelReadyRequest.Builder modelReadyRequest = ModelReadyRequest.newBuilder();
        modelReadyRequest.setName("model_name");
        modelReadyRequest.setVersion("1");
        ModelReadyResponse modelReadyResponse = grpc_stub.modelReady(modelReadyRequest.build());

        boolean modelReady = modelReadyResponse.getReady();

        channel.shutdownNow();
        return "health " + serverLive + " " + serverReady + " " + modelReady;
    }

    static String serverMetadata() {
        ManagedChannel channel = ManagedChannelBuilder
                        .forAddress(host, port)
                        .usePlaintext().build();
        GRPCInferenceServiceBlockingStub grpc_stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);

        ServerMetadataRequest.Builder request = ServerMetadataRequest.newBuilder();
        ServerMetadataResponse response = grpc_stub.serverMetadata(request.build());

        channel.shutdownNow();
        return "server " + response.getName();
    }

    static String modelMetadata() {
        ManagedChannel channel = ManagedChannelBuilder
                        .forAddress(host, port)
                        .usePlaintext().build();
        GRPCInferenceServiceBlockingStub grpc_stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);

        ModelMetadataRequest.Builder request = ModelMetadataRequest.newBuilder();
        request.setName("model_name");
        request.setVersion("1");
        ModelMetadataResponse response = grpc_stub.modelMetadata(request.build());

        channel.shutdownNow();
        return "model " + response.getInputs(0).getName() + " " + response.getInputs(0).getDatatype();
    }

    static String encodedImage() throws Exception {
        ManagedChannel channel = ManagedChannelBuilder
                        .forAddress(host, port)
                        .usePlaintext().build();
        GRPCInferenceServiceBlockingStub grpc_stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);

        ModelInferRequest.Builder request = ModelInferRequest.newBuilder();
        request.setModelName("image");
        request.setModelVersion("1");

        ModelInferRequest.InferInputTensor.Builder input = ModelInferRequest.InferInputTensor
                .newBuilder();
        String defaultInputName = "b";
        input.setName("input_name");
        input.setDatatype("BYTES");
        input.addShape(1);
        request.addInputs(input);

        FileInputStream imageStream = new FileInputStream(imagePath);
        request.clearRawInputContents();
        request.addRawInputContents(ByteString.readFrom(imageStream));

        ModelInferResponse response = grpc_stub.modelInfer(request.build());

        channel.shutdownNow();
        return "image " + response.getOutputs(0).getShapeList();
    }

    static String numpyArray() {
        ManagedChannel channel = ManagedChannelBuilder
                        .forAddress(host, port)
                        .usePlaintext().build();
        GRPCInferenceServiceBlockingStub grpc_stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);

        ModelInferRequest.Builder request = ModelInferRequest.newBuilder();
        request.setModelName("model_name");
        request.setModelVersion("1");

        List<Float> lst = Arrays.asList(0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f, 9f);
        InferTensorContents.Builder input_data = InferTensorContents.newBuilder();
        input_data.addAllFp32Contents(lst);

        ModelInferRequest.InferInputTensor.Builder input = ModelInferRequest.InferInputTensor
                .newBuilder();
        String defaultInputName = "b";
        input.setName("input_name");
        input.setDatatype("FP32");
        input.addShape(1);
        input.addShape(10);
        input.setContents(input_data);

        request.addInputs(0, input);

        ModelInferResponse response = grpc_stub.modelInfer(request.build());

        channel.shutdownNow();
        java.nio.ByteBuffer raw = response.getRawOutputContents(0).asReadOnlyByteBuffer()
                .order(java.nio.ByteOrder.LITTLE_ENDIAN);
        StringBuilder out = new StringBuilder("numpy");
        while (raw.hasRemaining()) {
            out.append(" ").append(raw.getFloat());
        }
        return out.toString();
    }

    public static void main(String[] args) throws Exception {
        host = args[0];
        port = Integer.parseInt(args[1]);
        imagePath = args[2];
        System.out.println(health());
        System.out.println(serverMetadata());
        System.out.println(modelMetadata());
        System.out.println(encodedImage());
        System.out.println(numpyArray());
    }
}
