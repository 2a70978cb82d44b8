package bench

// infinitic-py interop overlay: a JVM service for a Python client's failure and value edge cases
// (served by `mode=serve file=failing.yml`, whose retry policy retries each failure twice).
import io.infinitic.annotations.Name

@Name("FailingService")
interface FailingService {
  /** always throws IllegalStateException("refused by the JVM: <message>") (caused by an ArithmeticException) */
  fun refuse(message: String): String
  /** the double the name says: "nan", "inf", "-inf", or x */
  fun special(kind: String, x: Double): Double
  /** returns its arguments back as one object */
  fun mirror(n: Long, text: String?, values: Map<String, List<Double>?>): Mirrored
}

/** a plain data class (no @Serializable): Jackson writes it, property names as declared */
data class Mirrored(val n: Long, val text: String?, val values: Map<String, List<Double>?>)

class FailingServiceImpl : FailingService {
  override fun refuse(message: String): String =
    throw IllegalStateException("refused by the JVM: $message", ArithmeticException("root cause"))

  override fun special(kind: String, x: Double): Double = when (kind) {
    "nan" -> Double.NaN
    "inf" -> Double.POSITIVE_INFINITY
    "-inf" -> Double.NEGATIVE_INFINITY
    else -> x
  }

  override fun mirror(n: Long, text: String?, values: Map<String, List<Double>?>): Mirrored =
    Mirrored(n, text, values)
}
