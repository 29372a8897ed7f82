import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.flume.Event;
import org.apache.flume.EventDeliveryException;
import org.apache.flume.api.RpcClient;
import org.apache.flume.api.RpcClientFactory;
import org.apache.flume.event.EventBuilder;

/**
 * Flume's own thrift RPC client (flume-ng-sdk's RpcClientFactory, client.type = thrift) for the
 * integration tests (tests/src/flume_client.rs compiles and runs it).
 *
 * <p>Usage: {@code FlumeThriftClient host port protocol append|batch first count}. Sends the
 * events numbered first .. first+count-1, one {@code append} each or all in one
 * {@code appendBatch}; every event has the headers origin (non-ASCII), n and an empty one, and
 * the body "sdk n". Prints "ok N" when every call succeeded (exit 0), or "failed: ..." with the
 * client's exception and its causes (exit 3).
 *
 * <p>Load mode, for bench_sources: {@code FlumeThriftClient host port protocol load seconds
 * file...} runs one thread per file, each with its own client, sending the file's lines (one
 * event each, with the headers host, client and seq) in {@code appendBatch} calls of 100 events,
 * over and over, until {@code seconds} have passed or the process is killed. Prints "ok N" with
 * the events sent (exit 0), or "failed: ..." (exit 3) when a call failed.
 */
public class FlumeThriftClient {
  static final int LOAD_BATCH = 100;

  public static void main(String[] args) throws Exception {
    if (args.length > 3 && args[3].equals("load")) {
      load(args);
      return;
    }
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    String protocol = args[2];
    boolean batch = args[3].equals("batch");
    int first = Integer.parseInt(args[4]);
    int count = Integer.parseInt(args[5]);
    RpcClient client = client(host, port, protocol, Math.max(count, 1));
    int exit = 0;
    try {
      if (batch) {
        List<Event> events = new ArrayList<>();
        for (int i = first; i < first + count; i++) {
          events.add(event(i));
        }
        client.appendBatch(events);
      } else {
        for (int i = first; i < first + count; i++) {
          client.append(event(i));
        }
      }
      System.out.println("ok " + count);
    } catch (EventDeliveryException e) {
      StringBuilder why = new StringBuilder("failed: " + e);
      for (Throwable c = e.getCause(); c != null; c = c.getCause()) {
        why.append(" / caused by: ").append(c);
      }
      System.out.println(why);
      exit = 3;
    } finally {
      client.close();
    }
    System.out.flush();
    System.exit(exit);
  }

  private static RpcClient client(String host, int port, String protocol, int batch) {
    Properties p = new Properties();
    p.setProperty("client.type", "thrift");
    p.setProperty("hosts", "h1");
    p.setProperty("hosts.h1", host + ":" + port);
    p.setProperty("protocol", protocol);
    p.setProperty("batch-size", String.valueOf(batch));
    p.setProperty("request-timeout", "20000");
    p.setProperty("connect-timeout", "20000");
    return RpcClientFactory.getInstance(p);
  }

  private static void load(String[] args) throws Exception {
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    String protocol = args[2];
    long deadline = System.nanoTime() + Long.parseLong(args[4]) * 1_000_000_000L;
    int clients = args.length - 5;
    long[] sent = new long[clients];
    String[] failure = new String[clients];
    Thread[] threads = new Thread[clients];
    for (int c = 0; c < clients; c++) {
      final int me = c;
      final List<byte[]> lines = new ArrayList<>();
      for (String l : Files.readAllLines(Paths.get(args[5 + c]), StandardCharsets.UTF_8)) {
        lines.add(l.getBytes(StandardCharsets.UTF_8));
      }
      threads[c] = new Thread(() -> {
        RpcClient client = client(host, port, protocol, LOAD_BATCH);
        String hostHeader = String.format("web-%02d", me);
        String clientHeader = String.valueOf(me);
        long seq = 0;
        try {
          // Bounded by the deadline (and by the bench, which kills the process).
          while (System.nanoTime() < deadline) {
            List<Event> batch = new ArrayList<>(LOAD_BATCH);
            for (int i = 0; i < LOAD_BATCH; i++) {
              Map<String, String> headers = new HashMap<>();
              headers.put("host", hostHeader);
              headers.put("client", clientHeader);
              headers.put("seq", String.valueOf(seq));
              batch.add(EventBuilder.withBody(lines.get((int) (seq % lines.size())), headers));
              seq++;
            }
            client.appendBatch(batch);
            sent[me] += LOAD_BATCH;
          }
        } catch (EventDeliveryException e) {
          failure[me] = "failed: " + e + (e.getCause() == null ? "" : " / caused by: " + e.getCause());
        } finally {
          client.close();
        }
      });
      threads[c].start();
    }
    long total = 0;
    String failed = null;
    for (int c = 0; c < clients; c++) {
      threads[c].join();
      total += sent[c];
      if (failure[c] != null) {
        failed = failure[c];
      }
    }
    if (failed != null) {
      System.out.println(failed);
      System.out.flush();
      System.exit(3);
    }
    System.out.println("ok " + total);
    System.out.flush();
    System.exit(0);
  }

  private static Event event(int i) {
    Map<String, String> headers = new HashMap<>();
    headers.put("origin", "sdk-\u00fc\u00e9");
    headers.put("n", String.valueOf(i));
    headers.put("empty", "");
    return EventBuilder.withBody(("sdk " + i).getBytes(StandardCharsets.UTF_8), headers);
  }
}
