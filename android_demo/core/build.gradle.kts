// Pure JVM: no android.* imports, so the same sources build and test on any JDK 17
// (CI runs them with javac + JUnit 5's console launcher: core/run_jvm_tests.sh).
plugins {
    `java-library`
}

java {
    toolchain { languageVersion.set(JavaLanguageVersion.of(17)) }
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
