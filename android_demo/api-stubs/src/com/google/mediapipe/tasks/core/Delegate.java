package com.google.mediapipe.tasks.core;
public enum Delegate { CPU, GPU }
