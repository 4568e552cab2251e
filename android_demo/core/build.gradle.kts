// Pure JVM: no android.* imports, so the same sources build and test on any JDK 17 or newer
// (CI runs them with javac --release 17 + JUnit 5's console launcher: core/run_jvm_tests.sh).
plugins {
    `java-library`
}

// Compile for Java 17 with whatever JDK runs Gradle (javac --release 17): no toolchain to
// resolve or download, and the class files and API surface are Java 17's, as the app's are.
tasks.withType<JavaCompile>().configureEach {
    options.release.set(17)
    options.encoding = "UTF-8"
}

dependencies {
    testImplementation(libs.junit.jupiter)
    testRuntimeOnly("org.junit.platform:junit-platform-launcher")
}

tasks.test {
    useJUnitPlatform()
    // golden vectors made by the Python kit: tinybert-edge golden --bundle B --out golden.json
    listOf("tinybert.golden", "tinybert.bundle", "tinybert.benchOut").forEach { key ->
        System.getProperty(key)?.let { systemProperty(key, it) }
    }
}
