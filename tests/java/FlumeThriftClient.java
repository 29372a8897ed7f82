import java.nio.charset.StandardCharsets;
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
 */
public class FlumeThriftClient {
  public static void main(String[] args) throws Exception {
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    String protocol = args[2];
    boolean batch = args[3].equals("batch");
    int first = Integer.parseInt(args[4]);
    int count = Integer.parseInt(args[5]);
    Properties p = new Properties();
    p.setProperty("client.type", "thrift");
    p.setProperty("hosts", "h1");
    p.setProperty("hosts.h1", host + ":" + port);
    p.setProperty("protocol", protocol);
    p.setProperty("batch-size", String.valueOf(Math.max(count, 1)));
    p.setProperty("request-timeout", "20000");
    p.setProperty("connect-timeout", "20000");
    RpcClient client = RpcClientFactory.getInstance(p);
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

  private static Event event(int i) {
    Map<String, String> headers = new HashMap<>();
    headers.put("origin", "sdk-\u00fc\u00e9");
    headers.put("n", String.valueOf(i));
    headers.put("empty", "");
    return EventBuilder.withBody(("sdk " + i).getBytes(StandardCharsets.UTF_8), headers);
  }
}
