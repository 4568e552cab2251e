package org.pytorch.executorch;
public class ExecutorchRuntimeException extends RuntimeException { public ExecutorchRuntimeException(int code, String details) { super(details); } public int getErrorCode() { return 0; } public String getDetailedError() { return ""; } }
