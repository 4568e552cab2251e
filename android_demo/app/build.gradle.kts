plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "org.tinybertedge.demo"
    compileSdk = libs.versions.compileSdk.get().toInt()
    defaultConfig {
        applicationId = "org.tinybertedge.demo"
        minSdk = libs.versions.minSdk.get().toInt()
        targetSdk = libs.versions.compileSdk.get().toInt()
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
        // runtime versions written into every benchmark results file
        buildConfigField("String", "EXECUTORCH_VERSION", "\"${libs.versions.executorch.get()}\"")
        buildConfigField("String", "LITERT_VERSION", "\"${libs.versions.litert.get()}\"")
        buildConfigField("String", "MEDIAPIPE_TASKS_VERSION", "\"${libs.versions.mediapipe.tasks.get()}\"")
    }
    buildFeatures { buildConfig = true }
    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
    // .pte / .tflite are memory-mapped straight from the APK's copy: keep them uncompressed
    androidResources { noCompress += listOf("pte", "tflite") }
}

dependencies {
    implementation(project(":core"))
    implementation(project(":engine-executorch"))
    implementation(project(":engine-litert"))
    implementation(project(":engine-mediapipe"))
    implementation(libs.androidx.appcompat)
    implementation(libs.material)
}
