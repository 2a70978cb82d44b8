package bench

// infinitic-py interop overlay: a workflow whose BenchService tasks carry the Infinitic batch key
// (task meta "batchKey"), for a Python executor that batches per key.
// Usage: java -cp ... bench.KeyedKt config=DIR namespace=NS workflows=W per=n keys=K timeout=S [file=keyed.yml]
import io.infinitic.annotations.Name
import io.infinitic.workflows.Workflow
import io.infinitic.workflows.and
import kotlin.system.exitProcess

@Name("KeyedBenchWorkflow")
interface KeyedBenchWorkflow {
  /** dispatches n echo tasks over `keys` batch keys, awaits all; returns how many came back right */
  fun run(n: Int, offset: Int, keys: Int): Int
}

class KeyedBenchWorkflowImpl : Workflow(), KeyedBenchWorkflow {
  override fun run(n: Int, offset: Int, keys: Int): Int {
    val services = List(keys) { k ->
      newService(BenchService::class.java, meta = mapOf("batchKey" to "k$k".toByteArray()))
    }
    val deferreds = List(n) { i -> dispatch(services[i % keys]::echo, "m${offset + i}") }
    val results = deferreds.and().await()
    return results.withIndex().count { (i, r) -> r == "m${offset + i}" }
  }
}

fun main(args: Array<String>) {
  val opts = args.associate { it.substringBefore("=") to it.substringAfter("=", "") }
  val cfg = opts["config"] ?: "config"
  val w = (opts["workflows"] ?: "1").toInt()
  val per = (opts["per"] ?: "1000").toInt()
  val keys = (opts["keys"] ?: "10").toInt()
  val timeoutS = (opts["timeout"] ?: "600").toLong()
  opts["namespace"]?.let { NAMESPACE = it }
  val admin = org.apache.pulsar.client.admin.PulsarAdmin.builder().serviceHttpUrl(ADMIN).build()
  var exit = 0
  val worker = startWorker(cfg, opts["file"] ?: "keyed.yml")
  try {
    waitConsumers(admin, topic("workflow-engine", "KeyedBenchWorkflow"), "workflow-engine-subscription", 120)
    log("waiting for an external executor on ${topic("task-executor", SERVICE)} / task-executor-subscription")
    waitConsumers(admin, topic("task-executor", SERVICE), "task-executor-subscription", timeoutS)
    val client = worker.client
    val wf = client.newWorkflow(KeyedBenchWorkflow::class.java)
    val deferreds = (0 until w).map { i -> client.dispatch(wf::run, per, i * per, keys) }
    val total = awaitAll(deferreds, timeoutS)
    check(total == w.toLong() * per) { "expected ${w * per} correct results, got $total" }
    log("RESULT keyed K=${w * per} keys=$keys, every result correct")
  } catch (e: Throwable) {
    e.printStackTrace()
    exit = 1
  } finally {
    worker.close()
    admin.close()
  }
  exitProcess(exit)
}
